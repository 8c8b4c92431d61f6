"""The layers of docs/architecture.md, checked on the source: which package may import which, no
import circle between modules, and the code is ruff- and mypy-clean."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "bandit_router"

# Package -> the packages it may import (besides itself and the root's __version__). From the
# bottom: config and batching; the store; learning and statistics (no store, no HTTP); the
# services; the jobs; the process; HTTP; the app; the command line and the benchmarks on top.
FOUNDATION = {"config", "batching"}
LEARNING = FOUNDATION | {"policy", "audit", "offline", "embed"}
ALLOWED: dict[str, set[str]] = {
    "config": set(),
    "batching": set(),
    "store": FOUNDATION,
    "policy": FOUNDATION,
    "audit": FOUNDATION,
    "offline": FOUNDATION | {"policy"},
    "embed": FOUNDATION,
    "telemetry": FOUNDATION | {"audit"},
    "services": LEARNING | {"store", "telemetry"},
    "jobs": LEARNING | {"store", "telemetry", "services"},
    "runtime": LEARNING | {"store", "telemetry", "services", "jobs"},
    "api": FOUNDATION | {"telemetry", "services", "runtime"},
    # The console's pages read the store's aggregates for their charts; they act through services.
    "console": FOUNDATION | {"telemetry", "services", "runtime", "api", "store"},
    "app": FOUNDATION | {"api", "console", "runtime"},
    "bench": LEARNING | {"store", "telemetry", "services", "jobs", "runtime", "api", "app"},
    "cli": LEARNING
    | {"store", "telemetry", "services", "jobs", "runtime", "api", "app", "console", "bench"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """Every module of the project this file imports, at the top or inside a function."""
    found: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n for n in names if n in known and n != module}
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {m: _imports(p, m, set(files)) for m, p in files.items()}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_package_imports_only_the_layers_below_it() -> None:
    graph = _graph()
    packages = {_package(m) for m in graph} - {""}
    assert packages == set(ALLOWED), "a new package needs its place in ALLOWED and the docs"
    wrong = sorted(
        f"{m} -> {t}"
        for m, targets in graph.items()
        for t in targets
        if _package(t) not in ("", _package(m)) and _package(t) not in ALLOWED[_package(m)]
    )
    assert wrong == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_module_imports_in_a_circle() -> None:
    assert _cycles(_graph()) == []


def test_the_circle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_the_layer_check_sees_a_lazy_import_inside_a_function(tmp_path: Path) -> None:
    source = tmp_path / "x.py"
    source.write_text("def f():\n    from bandit_router.store import repository\n")
    assert _imports(source, "bandit_router.api.x", {"bandit_router.store.repository"}) == {
        "bandit_router.store.repository"
    }


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "bandit_router", "tests", "migrations"],
        ["ruff", "format", "--check", "bandit_router", "tests", "migrations"],
        ["mypy", "bandit_router"],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_the_code_is_clean(command: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
