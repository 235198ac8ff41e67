"""Every account, in account-id order: ListAccounts, the report job, a partner's children.

There is no index of all accounts: the account hashes are found with SCAN (every node of a
cluster), sorted by id, and read in batches. A page costs a SCAN of the keys (no values)
plus the reads of the accounts it looks at; a page token is the last id returned, so pages
stay stable while accounts are added.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from sessiongate.domain.model import Account
from sessiongate.store import keys
from sessiongate.store.codec import decode_account
from sessiongate.store.transport import Transport, raise_first

BATCH = 500


async def account_ids(redis: Transport, after: str = "") -> list[str]:
    """Every account id greater than `after`, sorted."""
    found = {keys.account_id_of(k) async for k in redis.scan(keys.ACCOUNT_GLOB, "hash")}
    return sorted(i for i in found if i > after)


async def read_accounts(redis: Transport, ids: list[str]) -> list[Account]:
    """The accounts of `ids` that exist, in order, one round trip."""
    out = []
    for data, version in raise_first(await redis.many(
            [("HMGET", keys.account(aid), "data", "v") for aid in ids])):
        if data is not None:
            out.append(decode_account(data, int(version or 0)))
    return out


async def scan_accounts(redis: Transport, after: str = "",
                        keep: Callable[[Account], bool] = lambda a: True
                        ) -> AsyncIterator[Account]:
    """Accounts with an id greater than `after`, in id order, those `keep` accepts."""
    ids = await account_ids(redis, after)
    for i in range(0, len(ids), BATCH):
        for account in await read_accounts(redis, ids[i:i + BATCH]):
            if keep(account):
                yield account
