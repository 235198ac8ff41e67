"""Which accounts name an account as their parent: a set per parent, for the depth rule of
channel-partner chains (`domain/parents.py`), which must see the subtree of an account that
moves under a new parent, not only the chain above it.

Kept by UpsertAccount after its commit (the parent's set lives in the parent's slot, the
account's hash in its own, so the two writes are not one atomic step): a crash between them
leaves a child out of its parent's set until the child is upserted again. The depth rule is
an admin-time guard; at login time a chain is read at most `MAX_DEPTH` levels up whatever is
stored, so a stale set can never make a login loop or read without bound.
"""

from __future__ import annotations

from sessiongate.store import keys
from sessiongate.store.transport import Transport


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


class ChildrenIndex:
    def __init__(self, redis: Transport) -> None:
        self._redis = redis

    async def move(self, account_id: str, old_parent: str, new_parent: str) -> None:
        """`account_id` now names `new_parent` ("" none) instead of `old_parent`."""
        if old_parent == new_parent:
            return
        if old_parent:
            await self._redis.call("SREM", keys.children(old_parent), account_id)
        if new_parent:
            await self._redis.call("SADD", keys.children(new_parent), account_id)

    async def height(self, account_id: str, limit: int) -> int:
        """Levels of descendants under `account_id`, counted up to `limit + 1` (enough to
        tell that it exceeds `limit`); each level is one round trip."""
        seen = {account_id}
        level = [account_id]
        height = 0
        while level and height <= limit:
            replies = await self._redis.many([("SMEMBERS", keys.children(p)) for p in level])
            found = {_text(c) for members in replies for c in members}
            level = sorted(found - seen)
            seen.update(level)
            if level:
                height += 1
        return height
