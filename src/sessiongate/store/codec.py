"""Account <-> JSON, as stored in Redis. Times are integer Unix milliseconds."""

from __future__ import annotations

import json
from typing import Any

from sessiongate.domain.clock import from_ms as from_ms  # re-exported for the other stores
from sessiongate.domain.clock import to_ms as to_ms
from sessiongate.domain.model import Account, AccountKind, AccountState, StateOverride
from sessiongate.store.jsontext import dumps, loads, quote


def _override_to_dict(o: StateOverride) -> dict[str, Any]:
    d: dict[str, Any] = {"state": o.state.value, "set_at": to_ms(o.set_at)}
    for key, value in (("reason", o.reason), ("actor", o.actor),
                       ("expires_at", to_ms(o.expires_at))):
        if value:
            d[key] = value
    return d


def _override_from_dict(d: dict[str, Any] | None) -> StateOverride | None:
    if not d:
        return None
    set_at = from_ms(d["set_at"])
    assert set_at is not None
    return StateOverride(
        state=AccountState(d["state"]),
        reason=d.get("reason", ""),
        actor=d.get("actor", ""),
        set_at=set_at,
        expires_at=from_ms(d.get("expires_at")),
    )


def encode_account(a: Account) -> str:
    """JSON without the version: the version lives beside it and is bumped by Lua.

    A field equal to its default is left out (issue #5, Redis memory: ~240 bytes instead of
    ~450 for 10 users and an open invoice). The names stay those of the former format, whose
    decoder read every field but `id` with these defaults: replicas of the release before
    read this JSON, so a rolling upgrade with both releases on one Redis is safe.

    Written out as `jsontext.dumps` of that dict would write it, byte for byte (text through
    `quote`, numbers as `int` prints them; tests/unit/test_codec_and_config.py compares): one
    `json.JSONEncoder.encode` of a dict builds its C encoder anew, ~8k of its ~30k
    instructions, and the sweep encodes an account per account it moves (docs/performance.md,
    row "Sweep: account and notice JSON written out").
    """
    out = ['{"id":', quote(a.account_id)]
    add = out.append
    if a.kind is not AccountKind.ENTERPRISE:
        add(f',"kind":"{a.kind.value}"')  # an enum's value: ASCII letters
    if a.users:
        add(',"users":[' + ",".join([quote(u) for u in sorted(a.users)]) + "]")
    if a.policy_id != "":
        add(',"policy":' + quote(a.policy_id))
    if a.plan_id != "":
        add(',"plan":' + quote(a.plan_id))
    if a.exempt:
        add(',"exempt":true')
    if a.seat_limit != 0:
        add(f',"seats":{int(a.seat_limit)}')
    if a.parent_id != "":
        add(',"parent":' + quote(a.parent_id))
    if a.admin_emails:
        add(',"admins":[' + ",".join([quote(e) for e in a.admin_emails]) + "]")
    if a.time_zone != "UTC":
        add(',"tz":' + quote(a.time_zone))
    if a.currency != "USD":
        add(',"cur":' + quote(a.currency))
    if a.report_emails:
        add(',"reports":[' + ",".join([quote(e) for e in a.report_emails]) + "]")
    if a.created_at is not None:
        add(f',"created":{to_ms(a.created_at)}')
    if a.derived_state is not AccountState.ACTIVE:
        add(f',"state":"{a.derived_state.value}"')
    if a.state_since is not None:
        add(f',"since":{to_ms(a.state_since)}')
    if a.override is not None:
        add(',"override":' + dumps(_override_to_dict(a.override)))
    if a.balance_minor != 0:
        add(f',"balance":{int(a.balance_minor)}')
    if a.oldest_due_at is not None:
        add(f',"due":{to_ms(a.oldest_due_at)}')
    if a.suspends_at is not None:
        add(f',"suspends":{to_ms(a.suspends_at)}')
    if a.next_evaluation_at is not None:
        add(f',"next_eval":{to_ms(a.next_evaluation_at)}')
    if a.extra != {}:
        add(',"extra":' + dumps(a.extra))
    add("}")
    return "".join(out)


_KINDS = {k.value: k for k in AccountKind}
_STATES = {s.value: s for s in AccountState}


def decode_account(data: str | bytes, version: int) -> Account:
    """Reads what `encode_account` writes (a field at its default may be left out)."""
    if isinstance(data, bytes):  # as json.loads reads bytes; what starts `{"` is UTF-8
        data = data.decode("utf-8" if data[:2] == b'{"' else json.detect_encoding(data),
                           "surrogatepass")
    d = loads(data)
    kind, state = d.get("kind", "ENTERPRISE"), d.get("state", "ACTIVE")
    try:  # a dict's lookup: the enum's own costs ~0.4 us each
        kind, state = _KINDS[kind], _STATES[state]
    except (KeyError, TypeError):
        kind, state = AccountKind(kind), AccountState(state)
    return Account(
        account_id=d["id"],
        kind=kind,
        users=frozenset(d.get("users", ())),
        policy_id=d.get("policy", ""),
        plan_id=d.get("plan", ""),
        exempt=bool(d.get("exempt", False)),
        seat_limit=int(d.get("seats", 0)),
        parent_id=d.get("parent", ""),
        admin_emails=tuple(d.get("admins", ())),
        time_zone=d.get("tz", "UTC"),
        currency=d.get("cur", "USD"),
        report_emails=tuple(d.get("reports", ())),
        created_at=from_ms(d.get("created")),
        derived_state=state,
        state_since=from_ms(d.get("since")),
        override=_override_from_dict(d.get("override")),
        balance_minor=int(d.get("balance", 0)),
        oldest_due_at=from_ms(d.get("due")),
        suspends_at=from_ms(d.get("suspends")),
        next_evaluation_at=from_ms(d.get("next_eval")),
        version=version,
        extra=dict(d.get("extra", {})),
    )
