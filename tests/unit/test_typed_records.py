"""Statuses, sources and modes are enums of the domain; a history entry has one schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from sessiongate.config import Settings
from sessiongate.domain.model import AccountState
from sessiongate.domain.records import FailureMode, HistoryEntry
from sessiongate.store.record import decode_history, encode_entry, encode_history
from sessiongate.usecases.login import failure_verdict

T = datetime(2026, 10, 5, 9, 30, 15, 250000, tzinfo=UTC)


def test_every_history_entry_has_the_six_keys_and_reads_back_as_stored() -> None:
    created = HistoryEntry(T, None, AccountState.ACTIVE, "account created", "admin")
    paid = HistoryEntry(T, AccountState.SUSPENDED, AccountState.ACTIVE,
                        "PAYMENT_SUCCEEDED pay-1: settled", "billing", "pay-1")
    for entry in (created, paid):
        stored = entry.to_dict()
        assert list(stored) == ["at", "from", "to", "cause", "actor", "event_id"]
        assert decode_history(encode_history(stored)) == stored
    assert created.to_dict()["event_id"] == "" and created.to_dict()["from"] is None
    assert encode_history(created.to_dict()) == (
        "1791192615250000\x1f\x1fACTIVE\x1faccount created\x1fadmin")  # as before: compact


def test_an_entry_encodes_as_its_dict_does() -> None:
    """`encode_entry` (what a commit writes) is `encode_history(entry.to_dict())`, byte for
    byte: compact for a UTC time and plain texts, JSON for the rest."""
    S = AccountState
    times = [T, T.replace(microsecond=0), datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
             datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
             T.replace(tzinfo=ZoneInfo("UTC")), T.replace(tzinfo=timezone(timedelta(0))),
             T.replace(tzinfo=timezone(timedelta(hours=2))), T.replace(tzinfo=None)]
    texts = ["", "plain", "50% off", "{json-like", "a\x1eb", "a\x1fb", "ünï"]
    entries = [HistoryEntry(at, frm, S.GRACE, cause, actor, eid)
               for at in times for frm in (None, S.ACTIVE)
               for cause, actor, eid in zip(texts, reversed(texts), texts[1:] + texts[:1],
                                            strict=True)]
    compact = 0
    for entry in entries:
        text = encode_entry(entry)
        assert text == encode_history(entry.to_dict()), entry
        assert decode_history(text) == entry.to_dict()
        compact += not text.startswith("{")
    assert 0 < compact < len(entries)


def test_the_failure_mode_setting_is_the_enum_and_reads_as_its_text() -> None:
    s = Settings.from_env({"SESSIONGATE_FAILURE_MODE": "open"})
    assert s.failure_mode is FailureMode.OPEN
    assert Settings().failure_mode is FailureMode.CLOSED
    verdict = failure_verdict(s.failure_mode, "boom")
    assert verdict.allowed and "failure mode open: allowed" in verdict.message
