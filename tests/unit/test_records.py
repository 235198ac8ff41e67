"""`quick_init`, `replacer`: build what the dataclass's __init__ and `replace` would."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from sessiongate.domain.model import Account, AccountState, StateOverride
from sessiongate.domain.records import quick_init, replacer
from sessiongate.store.accounts import Change


@dataclass(frozen=True, slots=True)
class Plain:
    a: int
    b: str = "b"
    c: list[int] = field(default_factory=list)
    d: int = field(default=4, kw_only=True)


Quick = quick_init(dataclass(frozen=True, slots=True)(type("Quick", (), {
    "__annotations__": {"a": "int", "b": "str", "c": "list[int]", "d": "int"},
    "b": "b", "c": field(default_factory=list), "d": field(default=4, kw_only=True)})))


def _fields(obj: object) -> dict[str, object]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}  # type: ignore[arg-type]


def test_same_values_defaults_and_factories_as_the_dataclass_init() -> None:
    for args, kwargs in [((1,), {}), ((1, "x"), {}), ((1, "x", [2]), {"d": 5}),
                         ((), {"a": 7, "c": [1], "d": 0})]:
        assert _fields(Quick(*args, **kwargs)) == _fields(Plain(*args, **kwargs))
    assert Quick(1).c == [] and Quick(1).c is not Quick(1).c  # a fresh list each time


def test_same_signature_and_errors_as_the_dataclass_init() -> None:
    assert (list(inspect.signature(Quick).parameters)
            == list(inspect.signature(Plain).parameters))
    with pytest.raises(TypeError):
        Quick()  # a is required
    with pytest.raises(TypeError):
        Quick(1, "b", [], 5)  # d is keyword-only
    with pytest.raises(TypeError):
        Quick(1, e=2)


def test_still_frozen_equal_hashable_and_picklable() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    o = StateOverride(AccountState.SUSPENDED, "fraud", "ops", now)
    assert o == StateOverride(state=AccountState.SUSPENDED, reason="fraud", actor="ops",
                              set_at=now, expires_at=None)
    assert hash(o) == hash(copy.copy(o)) and pickle.loads(pickle.dumps(o)) == o
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.reason = "x"  # type: ignore[misc]
    a = Account("acc", users=frozenset({"u"}), version=3)
    assert dataclasses.replace(a, version=4) == Account("acc", users=frozenset({"u"}),
                                                        version=4)
    assert Account("acc").extra == {} and Account("acc").extra is not Account("acc").extra
    assert Change(a).notifications == () and Change(a).account is a


def test_refuses_what_it_would_get_wrong() -> None:
    with pytest.raises(TypeError, match="frozen"):
        quick_init(dataclass(slots=True)(type("Mutable", (), {"__annotations__": {"a": "int"}})))
    with pytest.raises(TypeError, match="__post_init__"):
        quick_init(dataclass(frozen=True, slots=True)(type("Post", (), {
            "__annotations__": {"a": "int"}, "__post_init__": lambda self: None})))
    with pytest.raises(TypeError, match="init"):
        quick_init(dataclass(frozen=True, slots=True)(type("NoInit", (), {
            "__annotations__": {"a": "int"}, "a": field(default=1, init=False)})))


def test_replacer_is_replace_of_its_fields() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    a = Account("acc", users=frozenset({"u"}), admin_emails=("x@y",), version=7,
                extra={"k": "v"})
    derive = replacer(Account, "derived_state", "state_since", "balance_minor")
    b = derive(a, AccountState.SUSPENDED, now, 500)
    assert b == dataclasses.replace(a, derived_state=AccountState.SUSPENDED, state_since=now,
                                    balance_minor=500)
    assert type(b) is Account and b.extra is a.extra and a.balance_minor == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.version = 1  # type: ignore[misc]
    with pytest.raises(TypeError, match="no field"):
        replacer(Account, "nope")
    with pytest.raises(TypeError, match="frozen"):
        replacer(dataclass(slots=True)(type("Mutable", (), {"__annotations__": {"a": "int"}})),
                 "a")
