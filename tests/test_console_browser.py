"""The console in a real browser: Debian's Chromium driven by Playwright, against the service
served on a port, on a store filled through the API by routing, feedback and audits.

Chromium comes from the distribution (`./dev test` installs it when /usr/bin/chromium is
missing); Playwright only drives it and downloads nothing. The screenshots each test takes go to
docs/console/, where the README shows them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from served import cli, serving

from bandit_router.cli import demo
from bandit_router.store.db import make_engine

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[1] / "docs" / "console"
QUERIES = 150

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One server for the module, on the example pool, filled like `demo fill` but over HTTP."""
    d = tmp_path_factory.mktemp("console")
    url = f"sqlite:///{d}/router.db"
    env = {
        "BANDIT_ROUTER_DATABASE_URL": url,
        "BANDIT_ROUTER_AUDIT_RATE_FLOOR": "0.15",
        "BANDIT_ROUTER_CONSOLE_SECRET": "browser-test",
    }
    keys = {
        role: cli("keys", "create", "--role", role, "--name", f"{role}-1", env=env).stdout.strip()
        for role in ("admin", "grader")
    }
    assert all(k.startswith("brk_") for k in keys.values()), keys
    with serving(env, d / "server.log") as base:
        auth = {"Authorization": f"Bearer {keys['admin']}"}
        with httpx.Client(base_url=base, headers=auth, timeout=60) as client:
            report = demo.fill(client, QUERIES, seed=3, keep_audits=4)
        engine = make_engine(url)
        demo.spread(engine, report["decisions"], hours=12)
        engine.dispose()
        yield {"base": base, "keys": keys, "report": report}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    assert CHROMIUM.exists(), (
        "no /usr/bin/chromium: `./dev test` installs it (apt-get install chromium)"
    )
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM))
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    yield context.new_page()
    context.close()


def login(page: Any, service: dict[str, Any], role: str) -> None:
    page.goto(f"{service['base']}/console/login")
    page.fill("input[name=key]", service["keys"][role])
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/console/(overview|workbench)"))


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_login_and_overview_show_the_stores_numbers(page: Any, service: dict[str, Any]) -> None:
    page.goto(f"{service['base']}/console/overview")
    assert page.url.endswith("/console/login")  # no session: the login page
    shot(page, "login")
    login(page, service, "admin")
    assert page.url.endswith("/console/overview")
    assert page.text_content("#decisions") == str(QUERIES)
    assert page.text_content("#feedback") == str(QUERIES)
    assert page.text_content("#policy").startswith("v")
    assert re.fullmatch(r"0\.\d{3}", page.text_content("#mean-reward") or "")
    assert "ms" in (page.text_content("#latency") or "")  # the routes just served were timed
    assert page.locator("svg.chart polyline").count() >= 3
    # The audits' report: quality and saving against the reference, with their intervals.
    assert re.search(r"0\.\d{3}\s+95 % \[", page.text_content("#audited-quality") or "")
    assert "95 %" in (page.text_content("#saving") or "")
    shot(page, "overview")


def test_session_cookie_is_http_only_and_strict(page: Any, service: dict[str, Any]) -> None:
    login(page, service, "admin")
    (cookie,) = page.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert service["keys"]["admin"] not in cookie["value"]
    assert page.evaluate("document.cookie") == ""  # JavaScript cannot read it
    # A POST from elsewhere (no Origin of this host) is refused even with the cookie.
    jar = {cookie["name"]: cookie["value"]}
    refused = httpx.post(f"{service['base']}/console/policies/1/activate", cookies=jar)
    assert refused.status_code == 403


def _activate(page: Any, row: Any) -> None:
    page.once("dialog", lambda dialog: dialog.accept())  # the confirmation
    row.locator("button").click()
    page.wait_for_selector(".flash.ok")


def test_promote_and_roll_back_a_policy(page: Any, service: dict[str, Any]) -> None:
    login(page, service, "admin")
    page.goto(f"{service['base']}/console/policies")
    active = page.locator("tr.active").get_attribute("id")
    other = page.locator("tbody tr:not(.active)").first
    other_id = other.get_attribute("id")
    shot(page, "policies")
    _activate(page, other)
    assert page.locator("tr.active").get_attribute("id") == other_id
    _activate(page, page.locator(f"#{active}"))
    assert page.locator("tr.active").get_attribute("id") == active
    assert "is now active" in (page.text_content(".flash.ok") or "")


def test_models_bias_and_decision_pages(page: Any, service: dict[str, Any]) -> None:
    login(page, service, "admin")
    page.goto(f"{service['base']}/console/models")
    assert page.locator("tbody tr").count() == 5  # the example pool
    shot(page, "models")
    page.goto(f"{service['base']}/console/bias")
    assert page.locator("section.bias").count() >= 1  # the retrain estimated the bias
    shot(page, "bias")
    decision_id = service["report"]["decisions"][-1]
    page.fill("header input[name=id]", decision_id)
    page.press("header input[name=id]", "Enter")
    page.wait_for_url(re.compile(f"/console/decisions/{decision_id}"))
    assert page.locator("table").first.locator("tbody tr").count() == 5  # every candidate
    assert page.locator("tr.active").count() == 1  # the chosen one
    shot(page, "decision")


def test_grader_claims_and_grades_in_the_workbench(page: Any, service: dict[str, Any]) -> None:
    login(page, service, "grader")
    assert page.url.endswith("/console/workbench")
    queue = int(page.text_content("#queue") or "0")
    assert queue >= 1
    with page.expect_navigation():
        page.keyboard.press("c")  # claim a batch
    assert "hidden" in (page.text_content(".item .meta") or "")  # the model is not shown
    # Kept for the audit although prompts are not stored (STORE_PROMPTS=false).
    assert page.text_content("#prompt")
    assert "draft" in page.text_content("#answer") or "work it through" in page.text_content(
        "#answer"
    )
    page.fill("#rubric", "helpful-v1")
    shot(page, "workbench")
    batch = int(page.text_content("#batch") or "0")
    page.keyboard.press("Escape")  # leave the rubric field: keys are shortcuts again
    with page.expect_navigation():
        page.keyboard.press("p")  # pass
    assert "graded" in (page.text_content(".flash.ok") or "")
    assert page.text_content("#graded-hour") == "1"
    if batch > 1:
        assert page.input_value("#rubric") == "helpful-v1"  # remembered for the next item
        page.fill("#comment", "right, but terse")
        page.fill("#score", "0.7")
        with page.expect_navigation():
            page.press("#score", "Enter")
        assert "graded" in (page.text_content(".flash.ok") or "")
        assert page.text_content("#graded-hour") == "2"


def test_grader_key_cannot_reach_admin_pages(page: Any, service: dict[str, Any]) -> None:
    login(page, service, "grader")
    for path in ("overview", "policies", "bias", "models", "decisions/x"):
        response = page.goto(f"{service['base']}/console/{path}")
        assert response.status == 403, path
    assert page.locator("nav a", has_text="Overview").count() == 0
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    post = httpx.post(
        f"{service['base']}/console/policies/1/activate",
        cookies=cookies,
        headers={"origin": service["base"]},
    )
    assert post.status_code == 403
