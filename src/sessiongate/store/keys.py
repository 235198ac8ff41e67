"""Every Redis key name, in one place.

Per-account keys carry their bucket's hash tag (see `slots.py`): an account's keys, its
bucket's due index and its bucket's outbox share one slot, so each Lua script touches one
slot and the same code runs on Redis Cluster. Indexes and the outbox are sharded by bucket,
so no single key is a hot spot.
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
# SCAN MATCH of every account hash (with TYPE hash): the metrics' accounts-by-state count.
ACCOUNT_GLOB = f"{PREFIX}:*:account"


def _tag(account_id: str) -> str:
    return f"{PREFIX}:{bucket_tag(bucket_of(account_id))}:{account_id}"


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


# Kept in the account hash since issue #5; these keys of the former layout are still read
# (and moved into the hash by the next commit), and `applied_events` and `seat_changes` take
# what the hash's `e` and `s` push out beyond their byte budgets.


def ledger(account_id: str) -> str:
    """Former layout: string, JSON of the invoices and applied payments."""
    return f"{_tag(account_id)}:ledger"


def history(account_id: str) -> str:
    """Former layout: list of JSON transitions, newest last."""
    return f"{_tag(account_id)}:history"


def applied_events(account_id: str) -> str:
    """Zset: event id -> time applied (ms), trimmed by age: the former layout's idempotency
    record, and where the account hash's `e` overflows."""
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
    """KEYS of `commit_account.lua`, in its order: `account`, `ledger`, `history`,
    `applied_events`, `due_index_of`, `outbox_of`, `history_archive`, `seat_changes`; the
    same names as those functions', the bucket and its tag computed once (the sweep's
    commits name ~8 keys each)."""
    bucket = bucket_tag(bucket_of(account_id))
    tag = f"{PREFIX}:{bucket}:{account_id}"
    return [f"{tag}:account", f"{tag}:ledger", f"{tag}:history", f"{tag}:events",
            f"{PREFIX}:{bucket}:due", f"{PREFIX}:{bucket}:outbox", f"{tag}:history-archive",
            f"{tag}:seatlog"]


def seat_changes(account_id: str) -> str:
    """List: roster / seat-limit changes, `<v> US <ms> US <seat> US <seat>...`, for proration.

    The former layout's seat log, and where the account hash's `s` overflows. A list, not a
    zset: its entries are longer than the zset's compact-encoding limit (64 bytes) whenever a
    roster has a few users, and a list stays compact whatever its entries' length.
    """
    return f"{_tag(account_id)}:seatlog"


# Written by releases before the compact layout, still read (never written) so that their data
# keeps counting: fold them into the month's report until no month written by them is reported.


def logins(account_id: str, day: str) -> str:
    """Legacy set of one day `<YYYY-MM-DD>`: the nonce of each session opened."""
    return f"{_tag(account_id)}:logins:{day}"


def active_users(account_id: str, month: str) -> str:
    """Legacy set of one month: `<YYYY-MM-DD>` unit separator `<user>`."""
    return f"{_tag(account_id)}:active:{month}"


def peak_seats(account_id: str, month: str) -> str:
    """Legacy hash of one month: `<YYYY-MM-DD>` -> most seats held at once that day."""
    return f"{_tag(account_id)}:peak-seats:{month}"


def legacy_sessions(account_id: str) -> str:
    """Legacy zset: session member -> lease expiry (ms); folded into `leases` by the scripts."""
    return f"{_tag(account_id)}:sessions"


def legacy_seats(account_id: str) -> str:
    """Legacy zset: user holding a seat -> lease expiry (ms); folded into `leases`."""
    return f"{_tag(account_id)}:seats"


def seat_log(account_id: str) -> str:
    """Legacy zset: JSON {v, seats} of each roster / seat-limit change -> time (ms)."""
    return f"{_tag(account_id)}:seat-log"
