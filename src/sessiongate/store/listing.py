"""Every account, in account-id order: ListAccounts, the report job, a partner's children.

There is no index of all accounts: the account hashes are found with SCAN (every node of a
cluster), sorted by id, and read in batches. A page costs a SCAN of the keys (no values)
plus the reads of the accounts it looks at; a page token is the last id returned, so pages
stay stable while accounts are added.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from redis.asyncio import Redis

from sessiongate.domain.model import Account
from sessiongate.store import keys
from sessiongate.store.codec import decode_account

BATCH = 500


async def account_ids(redis: Redis, after: str = "") -> list[str]:
    """Every account id greater than `after`, sorted."""
    found = {keys.account_id_of(k) async for k in redis.scan_iter(
        match=keys.ACCOUNT_GLOB, count=1000, _type="hash")}
    return sorted(i for i in found if i > after)


async def read_accounts(redis: Redis, ids: list[str]) -> list[Account]:
    """The accounts of `ids` that exist, in order, one round trip."""
    pipe = redis.pipeline(transaction=False)
    for aid in ids:
        pipe.hmget(keys.account(aid), ["data", "v"])
    out = []
    for data, version in await pipe.execute():
        if data is not None:
            out.append(decode_account(data, int(version or 0)))
    return out


async def scan_accounts(redis: Redis, after: str = "",
                        keep: Callable[[Account], bool] = lambda a: True
                        ) -> AsyncIterator[Account]:
    """Accounts with an id greater than `after`, in id order, those `keep` accepts."""
    ids = await account_ids(redis, after)
    for i in range(0, len(ids), BATCH):
        for account in await read_accounts(redis, ids[i:i + BATCH]):
            if keep(account):
                yield account
