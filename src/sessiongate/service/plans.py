"""Accounts methods for plans/entitlements and usage summaries (issue #4)."""

from __future__ import annotations

from sessiongate.service.runtime import Runtime


class PlanMethods:
    """Mixed into AccountsServicer; `self.rt` is the shared runtime."""

    rt: Runtime
