"""The one answer memo: which answers may be remembered, and those remembered, for
CheckSession, Envoy's ext_authz Check and the HTTP forward auth (`/authz`).

A login decided on a near-cache snapshot that `decide` answers alike at any time gets the
same answer, but for the state's age, for as long as the near-cache holds that snapshot.
So its prebuilt bytes (service/wire.py) are kept per account, tied to that snapshot: the
near-cache reports every snapshot that leaves it (invalidated, reloaded, evicted;
`NearCache.on_drop`) and its answers go with it, and a remembered answer is sent only while
its snapshot is the one held and fresh (`NearCache.fresh_age`). The request's bytes, when
small and free of unknown fields, are remembered too: a request seen before is answered
from them without a parse (`sent`, CheckSession's hot path), a login's with the session it
opens appended (service/wire.py, `Prebuilt.with_session`).

A proxied request (Envoy's Check, `/authz`: service/proxy_check.py) is answered from its
identity, its feature, its method and path and the snapshot; which of them an answer depends
on is `proxy_key`'s rule, and the answer is kept under that key for the same snapshot:
Envoy's serialized CheckResponse without the state's age (service/wire.py appends it), the
HTTP status, headers and body of `/authz`.

Bounds (anyone with an app token chooses the ids and bytes): at most MAX_PER_ACCOUNT answers
per snapshot (of every kind), and `budget` bytes charged in all (an estimate of what each
keeps alive); request bytes of at most MAX_RAW_KEY bytes with no unknown field, at most
MAX_RAW_KEYS of them or MAX_RAW_BYTES charged (RAW_KEY_COST each beyond its bytes): beyond,
that table is emptied (a burst of distinct requests must not grow it without bound).
Snapshots are bounded by the near-cache's own entries.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import NamedTuple

from google.protobuf.unknown_fields import UnknownFieldSet

from sessiongate.api.v1 import session_control_pb2 as pb
from sessiongate.domain.decision import Verdict
from sessiongate.domain.model import Account
from sessiongate.ports import Snapshot
from sessiongate.service.wire import Answered, Prebuilt
from sessiongate.store.nearcache import NearCache
from sessiongate.usecases.login import LoginCheck, answers_at_any_time

MAX_PER_ACCOUNT = 256  # answers per snapshot (users x kinds)
BUDGET = 64 << 20  # bytes charged for every answer kept
# Bytes charged for an answer beyond its user id, twice its wire size (the bytes and the
# message) and its verdict's message: the dict slot, the key and the objects.
ANSWER_COST = 700
MAX_RAW_KEY = 512
MAX_RAW_KEYS = 100_000
MAX_RAW_BYTES = 32 << 20
RAW_KEY_COST = 200


class Kept(enum.Enum):
    """What a remembered answer is, in the memo's keys (user id, kind, ...)."""

    ANSWER = "answer"  # the whole answer to a login that opens no session (a denial)
    NO_SESSION = "no_session"  # the whole answer to a check with `no_session`
    BASE = "base"  # an allowed login's answer without its session: opened on each login
    ENVOY = "envoy"  # Envoy's Check: its CheckResponse's bytes, without the state's age
    AUTHZ = "authz"  # `/authz`: status, headers and body (`HttpAnswer`)

    # Hashed on every memo lookup (in the key): by identity, as members compare, not by
    # `Enum.__hash__`, a Python call (docs/performance.md, "Memo keys hashed by identity").
    __hash__ = object.__hash__


Key = tuple[str, Kept]  # (user id, kind)
# A proxied request's: (user id, kind, feature, method, path); method and path are None when
# the answer is the same for every method and path (`proxy_key`).
ProxyKey = tuple[str, Kept, str, str | None, str | None]


class HttpAnswer(NamedTuple):
    """`/authz`'s answer as remembered: what every request that gets it is sent."""
    status: int
    headers: Mapping[str, str]  # the x-sessiongate-* headers, cache-control (read-only)
    body: str  # a denial's JSON; "" for a 200


ProxyAnswer = bytes | HttpAnswer  # Kept.ENVOY's, Kept.AUTHZ's


class Remembered(NamedTuple):
    answer: Prebuilt
    verdict: Verdict  # the login check's (a seat refusal is built on it)


class RawRequest(NamedTuple):
    """What request bytes parsed before asked, with the memo keys of their answers (made
    once, when the bytes are remembered)."""
    account_id: str
    user_id: str
    whole: Key  # the whole answer (a denial; a check with `no_session`)
    base: Key | None  # a login's answer without its session (an allowed login), if a login


# Opens the session of an allowed login answered from the memo: (account, account id, user
# id) -> (session id, expiry in Unix ms), or None when it cannot be opened without awaiting
# (a seat).
Opener = Callable[[Account, str, str], "tuple[str, int] | None"]


def rememberable(checked: LoginCheck, answered: Verdict, *, feature: bool,
                 no_session: bool) -> Kept | None:
    """Whether CheckSession may remember its answer to `checked`, as what; None: it may not.

    - Only a verdict decided on a fresh near-cache snapshot (not read from Redis, not
      stale, not the failure mode's) that `decide` answers alike at any time: no parent to
      consult, no override that expires. It holds as long as the snapshot (for an account
      in a dunning stage, with its policy as cached: a policy change reaches remembered
      answers within the two TTLs).
    - Only the login check's own verdict as `answered`: not a seat refusal, an entitlement's
      denial or a feature lifted for an account restricted for non-payment.
    - A denial, an unknown account, or a check with `no_session`: the whole answer, unless a
      feature was asked (its answer reads the plan and the quota).
    - An allowed login of a known account that opens a session or asks a feature: its answer
      without the session or quota (BASE); the session is opened anew on every login.
    """
    account = checked.lookup.account
    if (checked.snapshot is None or answered is not checked.verdict
            or not answers_at_any_time(account)):
        return None
    if not answered.allowed or account is None or (no_session and not feature):
        if feature:
            return None
        return Kept.NO_SESSION if no_session else Kept.ANSWER
    return Kept.BASE


def proxy_key(checked: LoginCheck, kind: Kept, user_id: str, feature: str, method: str,
              path: str, *, signed_links: bool) -> ProxyKey | None:
    """The key a proxied request's answer (service/proxy_check.py) may be remembered under
    for `checked`'s snapshot; None: it may not.

    - As for CheckSession: only a login verdict decided on a fresh near-cache snapshot that
      `decide` answers alike at any time (no parent, no override that expires).
    - Not restricted by payment (active, overdue but allowed, closed, unknown, off the
      roster): the answer depends on the identity and the feature (Envoy's metadata names
      it) only, the same for every method and path.
    - Restricted by payment: an open path or the method (READ_ONLY) may change it, so it
      is kept for this method and path only; not at all when a feature is asked (its
      answer reads the plan, which the snapshot does not hold), nor when a 402 body would
      carry a standing-page link (`signed_links`: signed at the time of the request).
    """
    account = checked.lookup.account
    if checked.snapshot is None or not answers_at_any_time(account):
        return None
    if account is None or not checked.verdict.restricted_by_payment:
        return (user_id, kind, feature, None, None)
    if feature or signed_links:
        return None
    return (user_id, kind, feature, method, path)


def request_key(request: pb.CheckSessionRequest) -> Key:
    """The memo key of the whole answer to `request` (one without a feature)."""
    return (request.user_id, Kept.NO_SESSION if request.no_session else Kept.ANSWER)


def answer_cost(user_id: str, value: Remembered) -> int:
    return (ANSWER_COST + len(user_id) + 2 * len(value.answer.wire)
            + len(value.verdict.message))


def proxy_cost(key: ProxyKey, value: ProxyAnswer) -> int:
    """Bytes charged for a proxied request's answer: its key's strings and what it keeps."""
    size = ANSWER_COST + len(key[0]) + len(key[2]) + len(key[3] or "") + len(key[4] or "")
    if isinstance(value, bytes):
        return size + len(value)
    return size + len(value.body) + sum(len(k) + len(v) + 100 for k, v in value.headers.items())


class _Slot:
    """The answers remembered for one snapshot, and the bytes charged for them."""

    __slots__ = ("answers", "cost", "proxied", "snapshot")

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.answers: dict[Key, Remembered] = {}  # CheckSession's
        self.proxied: dict[ProxyKey, ProxyAnswer] = {}  # Envoy's and /authz's
        self.cost = 0


class AnswerMemo:
    def __init__(self, cache: NearCache, *, budget: int = BUDGET) -> None:
        self._cache = cache
        self._budget = budget
        self._slots: dict[str, _Slot] = {}  # by account id
        # Request bytes parsed before -> what they ask.
        self.raw_keys: dict[bytes, RawRequest] = {}
        self._raw_bytes = 0  # charged for `raw_keys`
        self.bytes = 0  # charged for the answers kept
        cache.on_drop(self._dropped)

    def sent(self, raw: bytes, opener: Opener) -> tuple[bytes, Answered] | None:
        """The hot path: for request bytes seen before, the bytes of the answer remembered
        for them while its snapshot is held and fresh (a near-cache hit) with the state's
        age, and what the metrics read of them; None (nothing counted) when there is none.
        An allowed login's answer is remembered without its session: `opener` opens one,
        appended to the bytes (None from it: the caller answers)."""
        request = self.raw_keys.get(raw)
        if request is None:
            return None
        slot = self._slots.get(request.account_id)
        if slot is None:
            return None
        value = slot.answers.get(request.whole)
        if value is not None:
            age = self._cache.fresh_age(request.account_id, slot.snapshot)
            return None if age is None else value.answer.answer(age)
        if request.base is None:
            return None
        value = slot.answers.get(request.base)
        if value is None:
            return None
        age = self._cache.fresh_age(request.account_id, slot.snapshot)
        account = slot.snapshot.account
        if age is None or account is None:
            return None
        opened = opener(account, request.account_id, request.user_id)
        if opened is None:
            return None
        return value.answer.with_session(age, *opened)

    def base_login(self, raw: bytes) -> tuple[RawRequest, Remembered, int, Snapshot] | None:
        """For the bytes of a login seen before whose session `sent` could not open without
        awaiting (a seat to take): what they ask, and `remembered`'s answer without its
        session; None, counting nothing, when there is none."""
        request = self.raw_keys.get(raw)
        if request is None or request.base is None:
            return None
        got = self.remembered(request.account_id, request.base)
        return None if got is None else (request, *got)

    def remembered(self, account_id: str, key: Key
                   ) -> tuple[Remembered, int, Snapshot] | None:
        """The answer remembered under `key` while its snapshot is held and fresh, with the
        snapshot's age in ms (a near-cache hit, counted) and the snapshot; None, counting
        nothing, otherwise (the caller then checks as usual, which counts)."""
        slot = self._slots.get(account_id)
        if slot is None:
            return None
        value = slot.answers.get(key)
        if value is None:
            return None
        age = self._cache.fresh_age(account_id, slot.snapshot)
        if age is None:
            return None
        return value, age, slot.snapshot

    def get(self, snapshot: Snapshot, account_id: str, key: Key) -> Remembered | None:
        """What is remembered under `key` for `snapshot` (a login check just read it)."""
        slot = self._slots.get(account_id)
        if slot is None or slot.snapshot is not snapshot:
            return None
        return slot.answers.get(key)

    def keep(self, snapshot: Snapshot, account_id: str, key: Key, value: Remembered,
             size: int) -> bool:
        """Remember `value` under `key` for `snapshot`, charging `size` bytes (`answer_cost`).
        False, keeping nothing, when the near-cache no longer holds the snapshot, or its
        answers or the byte budget are full: the caller answers anew next time."""
        slot = self._slots.get(account_id)
        known = slot is not None and slot.snapshot is snapshot and key in slot.answers
        slot = self._room(snapshot, account_id, known, size)
        if slot is None:
            return False
        slot.answers[key] = value
        return True

    def proxied(self, account_id: str, user_id: str, kind: Kept, feature: str, method: str,
                path: str) -> tuple[ProxyAnswer, int] | None:
        """A proxied request's answer remembered (`proxy_key`) while its snapshot is held and
        fresh, with the snapshot's age in ms (a near-cache hit, counted); None, counting
        nothing, otherwise (the caller then checks as usual, which counts)."""
        slot = self._slots.get(account_id)
        if slot is None:
            return None
        answers = slot.proxied
        value = answers.get((user_id, kind, feature, None, None))
        if value is None:
            value = answers.get((user_id, kind, feature, method, path))
            if value is None:
                return None
        age = self._cache.fresh_age(account_id, slot.snapshot)
        if age is None:
            return None
        return value, age

    def keep_proxied(self, snapshot: Snapshot, account_id: str, key: ProxyKey,
                     value: ProxyAnswer) -> bool:
        """`keep` for a proxied request's answer (`proxy_key`), charged `proxy_cost`."""
        slot = self._slots.get(account_id)
        known = slot is not None and slot.snapshot is snapshot and key in slot.proxied
        slot = self._room(snapshot, account_id, known, proxy_cost(key, value))
        if slot is None:
            return False
        slot.proxied[key] = value
        return True

    def _room(self, snapshot: Snapshot, account_id: str, known: bool, size: int
              ) -> _Slot | None:
        """The slot of `snapshot` with room for one more answer of `size` bytes (charged),
        or for a new value under a key it has (`known`: nothing charged); None when the
        near-cache no longer holds the snapshot, or its answers or the budget are full."""
        if not self._cache.held(account_id, snapshot):
            return None
        slot = self._slots.get(account_id)
        if slot is not None and slot.snapshot is not snapshot:  # not reported dropped
            self._dropped(account_id, slot.snapshot)
            slot = None
        if slot is not None and known:
            return slot
        if self.bytes + size > self._budget or (
                slot is not None
                and len(slot.answers) + len(slot.proxied) >= MAX_PER_ACCOUNT):
            return None
        if slot is None:
            slot = self._slots[account_id] = _Slot(snapshot)
        slot.cost += size
        self.bytes += size
        return slot

    def remember_request(self, raw: bytes, request: pb.CheckSessionRequest) -> None:
        """Key the answers to `request` (valid ids, no feature) by its bytes, if they are
        worth keeping: a short request of known fields only."""
        if len(raw) > MAX_RAW_KEY or len(UnknownFieldSet(request)):
            return
        keys = self.raw_keys
        cost = RAW_KEY_COST + len(raw)
        if raw not in keys:
            if len(keys) >= MAX_RAW_KEYS or self._raw_bytes + cost > MAX_RAW_BYTES:
                keys.clear()
                self._raw_bytes = 0
            self._raw_bytes += cost
        keys[raw] = RawRequest(request.account_id, request.user_id, request_key(request),
                               None if request.no_session else (request.user_id, Kept.BASE))

    def _dropped(self, account_id: str, snapshot: Snapshot) -> None:
        """The near-cache let `snapshot` go: its answers go too."""
        slot = self._slots.get(account_id)
        if slot is not None and slot.snapshot is snapshot:
            del self._slots[account_id]
            self.bytes -= slot.cost
