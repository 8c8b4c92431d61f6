"""Change a running Runtime's settings in a test (a served router reads them at start-up only):
the runtime and every service that holds them see the change."""

from __future__ import annotations

from bandit_router.runtime import Runtime


def change_settings(rt: Runtime, **updates: object) -> None:
    rt.settings = rt.settings.model_copy(update=updates)
    rt.routing.settings = rt.settings
    rt.admin.settings = rt.settings
    rt.proxy.settings = rt.settings
