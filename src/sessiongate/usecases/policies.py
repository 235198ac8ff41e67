"""An admin's dunning policy: stored, and seen at once by this process's login checks."""

from __future__ import annotations

from sessiongate.domain.policy import DunningPolicy
from sessiongate.ports import PolicySeeds, PolicyWrites


class PolicyAdmin:
    """Built once by app.py; UpsertPolicy hands it a validated policy."""

    def __init__(self, store: PolicyWrites, cache: PolicySeeds) -> None:
        self.store = store
        self.cache = cache

    async def upsert(self, policy: DunningPolicy) -> DunningPolicy:
        """Store `policy` and seed the login checks' cache (other replicas' caches see it
        when their entry expires)."""
        await self.store.put(policy)
        self.cache.put(policy)
        return policy
