"""Key names are unambiguous for every valid id (issue 26, item 4): ids may contain `:`."""

from __future__ import annotations

from collections.abc import Iterator

from hypothesis import given
from hypothesis import strategies as st

from sessiongate.store import keys
from sessiongate.store.slots import key_slot

# Ids made of what matters: the separator, the escape, hash-tag braces, the kinds' words.
ids = st.lists(st.sampled_from(["t", ":", "%", "3A", "{", "}", "a", "quota", "all", "leases",
                                "usage", "2026-10", "notified"]),
               min_size=1, max_size=6).map("".join)


def untagged(key: str) -> str:
    """The key without its hash tag: ids of two buckets must not collide either (one day
    they may share one), so uniqueness is asked of this part."""
    return key.split("}", 1)[1]


def names(aid: str, feature: str) -> Iterator[tuple[str, str]]:
    """Every key of account `aid` (with `feature` for the quota counters), with its kind."""
    for fn in (keys.account, keys.history_archive, keys.applied_events, keys.leases,
               keys.usage_events, keys.seat_changes):
        yield fn.__name__, fn(aid)
    for window in ("all", "M20261001"):
        yield f"quota {window} {feature}", keys.quota(aid, feature, window)
    yield "usage", keys.usage(aid, "2026-10")


def test_the_issue_example_no_longer_collides() -> None:
    assert keys.leases("tenant19:quota:all") != keys.quota("tenant19", "leases", "all")


def test_ids_that_spell_other_keys_get_keys_of_their_own() -> None:
    accounts = ["t", "t:quota", "t:quota:all", "t%3Aquota%3Aall", "t:quota:M20261001",
                "t:usage", "t:a:t", "a", "a:t", "notified", "notified:t", "t:"]
    features = ["leases", "account", "x:leases", "all:leases", "usage-events", "seatlog"]
    assert_unique([(a, f) for a in accounts for f in features])


@given(st.lists(st.tuples(ids, ids), min_size=2, max_size=6, unique=True))
def test_no_two_accounts_or_kinds_share_a_key(pairs: list[tuple[str, str]]) -> None:
    assert_unique(pairs)


def assert_unique(pairs: list[tuple[str, str]]) -> None:
    owner: dict[str, tuple[str, str]] = {}
    for aid, feature in pairs:
        for kind, key in names(aid, feature):
            who = (aid, kind)
            assert owner.setdefault(untagged(key), who) == who, (key, who)
    bucket_keys = {untagged(k) for k in (keys.due_index(0), keys.outbox(0), *(
        keys.notify_done(0, f"{aid}:{feature}") for aid, feature in pairs))}
    assert not bucket_keys & owner.keys()


@given(ids, ids)
def test_every_key_of_an_account_is_in_its_bucket_slot(aid: str, feature: str) -> None:
    slots = {key_slot(key) for _, key in names(aid, feature)}
    assert slots == {key_slot(keys.due_index_of(aid))} == {key_slot(keys.outbox_of(aid))}
    assert keys.commit_keys(aid)[0] == keys.account(aid)


@given(st.text(min_size=1, max_size=40))
def test_an_account_hash_key_names_its_account(aid: str) -> None:
    """Listing accounts reads their ids back from key names (store/listing.py)."""
    assert keys.account_id_of(keys.account(aid)) == aid
    assert keys.account_id_of(keys.account(aid).encode()) == aid
