"""The web console at /console: server-rendered pages over the same services as the API."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles


def install(app: FastAPI) -> None:
    """Mount the console's pages and its vendored assets (nothing is loaded from elsewhere)."""
    from bandit_router.console import pages
    from bandit_router.console.session import Signer

    app.state.console_signer = Signer.from_settings(app.state.settings)
    static = StaticFiles(directory=str(files("bandit_router.console") / "static"))
    app.mount(f"{pages.PREFIX}/static", static, name="console-static")
    app.include_router(pages.router)
