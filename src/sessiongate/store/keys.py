"""Every Redis key name, in one place.

Per-account keys share the hash tag `{<account>}` so that each Lua script touches one slot
and the same code runs on Redis Cluster. Global keys (streams, indexes) are named here too.
"""

from __future__ import annotations

PREFIX = "sg"

# Global keys.
INVALIDATION_CHANNEL = f"{PREFIX}:invalidate"
DUE_INDEX = f"{PREFIX}:due"  # zset: account id -> next evaluation time (ms)
OUTBOX_STREAM = f"{PREFIX}:outbox"  # notifications to deliver
POLICY_PREFIX = f"{PREFIX}:policy:"
PLAN_PREFIX = f"{PREFIX}:plan:"
PAYMENT_STREAM = "sessiongate:payments"  # public name: the billing system XADDs here
PAYMENT_DEAD_LETTER = "sessiongate:payments:dead"
USAGE_STREAM = "sessiongate:usage"  # public name: the billing system reads usage here


def _tag(account_id: str) -> str:
    return f"{PREFIX}:{{{account_id}}}"


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
