"""Accounts methods of the dunning engine: policies, overrides, history, preview (issue #3)."""

from __future__ import annotations

from sessiongate.service.runtime import Runtime


class PolicyMethods:
    """Mixed into AccountsServicer; `self.rt` is the shared runtime."""

    rt: Runtime
