"""Every Redis key name, in one place.

Per-account keys carry their bucket's hash tag (see `slots.py`): an account's keys, its
bucket's due index and its bucket's outbox share one slot, so each Lua script touches one
slot and the same code runs on Redis Cluster. Indexes and the outbox are sharded by bucket,
so no single key is a hot spot.

Names are unambiguous for every valid id (ids may hold `:`): an account's keys are
`sg:{tag}:a:<account>:<kind>[:...]` with the account id escaped (`escape`: no `:` left in
it), and the bucket's own keys (`due`, `outbox`, `notified:...`) never have `a` there. So
account `t:quota:all`'s keys can never be account `t`'s quota counters. Whatever follows an
account's kind (a feature, a notification id) is the key's last part and needs no escaping.
"""

from __future__ import annotations

from sessiongate.store.slots import BUCKETS, bucket_of, bucket_tag

PREFIX = "sg"

# Global keys.
INVALIDATION_CHANNEL = f"{PREFIX}:invalidate"
POLICY_PREFIX = f"{PREFIX}:policy:"
PLAN_PREFIX = f"{PREFIX}:plan:"
PAYMENT_STREAM = "sessiongate:payments"  # public name: the billing system XADDs here
PAYMENT_DEAD_LETTER = "sessiongate:payments:dead"
USAGE_STREAM = "sessiongate:usage"  # public name: the billing system reads usage here
NOTIFY_DEAD_LETTER = "sessiongate:notifications:dead"  # public: undeliverable notifications
BATCH_DEAD_LETTER = "sessiongate:batch:dead"  # public: login records Redis refused (batch.py)
# SCAN MATCH of every account hash (with TYPE hash): the metrics' accounts-by-state count.
ACCOUNT_GLOB = f"{PREFIX}:*:a:*:account"


def escape(account_id: str) -> str:
    """The id with `%` and `:` percent-encoded: one key component, and a different one for
    every id (`%` is escaped too, so `a%3Ab` and `a:b` stay apart)."""
    if "%" in account_id or ":" in account_id:
        return account_id.replace("%", "%25").replace(":", "%3A")
    return account_id


def unescape(component: str) -> str:
    """`escape` undone."""
    if "%" in component:
        return component.replace("%3A", ":").replace("%25", "%")
    return component


def account_id_of(key: bytes | str) -> str:
    """The id of an account hash's key (`account`): `sg:{b12.3}:a:acme%3Aeu:account` ->
    `acme:eu`."""
    text = key.decode() if isinstance(key, bytes) else key
    return unescape(text.split("}:a:", 1)[1].removesuffix(":account"))


def _tag(account_id: str) -> str:
    return f"{PREFIX}:{bucket_tag(bucket_of(account_id))}:a:{escape(account_id)}"


def due_index(bucket: int) -> str:
    """Zset: account id -> next evaluation time (ms), for the accounts of one bucket."""
    return f"{PREFIX}:{bucket_tag(bucket)}:due"


def outbox(bucket: int) -> str:
    """Stream: notifications to deliver, for the accounts of one bucket."""
    return f"{PREFIX}:{bucket_tag(bucket)}:outbox"


def notify_done(bucket: int, notification_id: str) -> str:
    """Set: the sinks done with one notification (delivered or dead-lettered); expires."""
    return f"{PREFIX}:{bucket_tag(bucket)}:notified:{notification_id}"


def due_index_of(account_id: str) -> str:
    return due_index(bucket_of(account_id))


def outbox_of(account_id: str) -> str:
    return outbox(bucket_of(account_id))


def usage_shard(bucket: int) -> str:
    """Redis Cluster only: the usage stream of one bucket (`sessiongate:usage:{bN.k}`).

    On a cluster, recording usage must touch one slot, and one stream for every account would
    be a hot spot; so usage is sharded by bucket there, and billing reads all BUCKETS shards.
    On a single Redis, usage goes to the one public stream USAGE_STREAM.
    """
    return f"{USAGE_STREAM}:{bucket_tag(bucket)}"


def usage_stream_of(account_id: str, *, sharded: bool) -> str:
    return usage_shard(bucket_of(account_id)) if sharded else USAGE_STREAM


ALL_BUCKETS = range(BUCKETS)


def account(account_id: str) -> str:
    """Hash of everything an account keeps (issue #5, one key instead of six; `store/record.py`):
    `data` (JSON of the account) and `v` (version), both read by the release before too; `l`
    the ledger, `h` the newest history entries, `e` applied event ids not in the ledger, `s`
    the newest seat changes. Compact in Redis with `hash-max-ziplist-value 1024`."""
    return f"{_tag(account_id)}:account"


def history_archive(account_id: str) -> str:
    """List: history entries pushed out of the account hash's `h` (oldest first); only
    accounts with a long history have one."""
    return f"{_tag(account_id)}:history-archive"


def applied_events(account_id: str) -> str:
    """Zset: event id -> time applied (ms), trimmed by age: where the account hash's `e`
    overflows."""
    return f"{_tag(account_id)}:events"


def policy(policy_id: str) -> str:
    return f"{POLICY_PREFIX}{policy_id}"


def plan(plan_id: str) -> str:
    return f"{PLAN_PREFIX}{plan_id}"


# Sessions, seats, entitlements and usage (issue #4). All per account: one slot per account.


def leases(account_id: str) -> str:
    """Zset of session leases and seats (one key, issue #5): a session member is the user, unit
    separator, nonce, scored by its lease expiry (ms); a seat member is the bare user id,
    scored by its lease expiry plus `SEAT_OFFSET_MS`, so that live seats are one ZCOUNT."""
    return f"{_tag(account_id)}:leases"


# Seat scores are shifted past every session score (expiries stay below 10**13 ms, the year
# 2286): ZCOUNT of (now + offset, +inf) counts live seats. Exact in a double (< 2**53).
SEAT_OFFSET_MS = 10**13


def sessions(account_id: str) -> str:
    """Where session leases are written: `leases`."""
    return leases(account_id)


def seats(account_id: str) -> str:
    """Where seats are written: `leases` (the batch writer's seats carry unshifted scores)."""
    return leases(account_id)


def quota(account_id: str, feature: str, window: str) -> str:
    """String: units of a metered feature consumed in one reset window."""
    return f"{_tag(account_id)}:quota:{window}:{feature}"


def usage_events(account_id: str) -> str:
    """Zset: usage / consumption event id -> time recorded (ms); idempotency, trimmed by age."""
    return f"{_tag(account_id)}:usage-events"


def usage(account_id: str, month: str) -> str:
    """Hash of one month, all its report data in one small key (fields: `store/activity.py`):
    usage `t:<feature>` total, `n:<feature>` events, `d:<YYYY-MM-DD>:<feature>` daily; logins
    `l:<DD>:<nonce>`, active users `a:<DD>:<user>`, peak seats in use `p:<DD>`."""
    return f"{_tag(account_id)}:usage:{month}"


def report_sent(account_id: str, period: str) -> str:
    """String: the scheduled monthly report of one account and month is in the outbox."""
    return f"{_tag(account_id)}:report:{period}"


def reports_complete(period: str) -> str:
    """String: every account's report of `period` is in the outbox (the job stops scanning)."""
    return f"{PREFIX}:reports:{period}:complete"


DIGEST_ACCOUNT = "-digest-"  # the digest's outbox entries live in this id's bucket


def digest_sent(day: str) -> str:
    """String: the digest of one day `<YYYY-MM-DD>` is in the outbox."""
    return f"{_tag(DIGEST_ACCOUNT)}:digest:{day}"


def commit_keys(account_id: str) -> list[str]:
    """KEYS of `commit_account.lua`, in its order: `account`, `applied_events`,
    `due_index_of`, `outbox_of`, `history_archive`; the same names as those functions', the
    bucket and its tag computed once (the sweep commits many)."""
    bucket = bucket_tag(bucket_of(account_id))
    tag = f"{PREFIX}:{bucket}:a:{escape(account_id)}"
    return [f"{tag}:account", f"{tag}:events", f"{PREFIX}:{bucket}:due",
            f"{PREFIX}:{bucket}:outbox", f"{tag}:history-archive"]


def seat_changes(account_id: str) -> str:
    """List: roster / seat-limit changes, `<v> US <ms> US <seat> US <seat>...`, for proration.

    Where the account hash's `s` overflows. A list, not a
    zset: its entries are longer than the zset's compact-encoding limit (64 bytes) whenever a
    roster has a few users, and a list stays compact whatever its entries' length.
    """
    return f"{_tag(account_id)}:seatlog"
