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


ALL_BUCKETS = range(BUCKETS)


def account(account_id: str) -> str:
    """Hash: `data` (JSON of the account), `v` (version, bumped by every write)."""
    return f"{_tag(account_id)}:account"


def ledger(account_id: str) -> str:
    """String: JSON of the invoices and applied payments."""
    return f"{_tag(account_id)}:ledger"


def history(account_id: str) -> str:
    """List: JSON transitions, newest last."""
    return f"{_tag(account_id)}:history"


def applied_events(account_id: str) -> str:
    """Zset: event id -> time applied (ms); the idempotency record, trimmed by age."""
    return f"{_tag(account_id)}:events"


def policy(policy_id: str) -> str:
    return f"{POLICY_PREFIX}{policy_id}"


def plan(plan_id: str) -> str:
    return f"{PLAN_PREFIX}{plan_id}"
