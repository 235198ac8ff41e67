from __future__ import annotations

from sessiongate.store import keys
from sessiongate.store.slots import BUCKETS, SLOTS, bucket_of, bucket_tag, crc16, key_slot


def test_crc16_matches_redis_reference_values() -> None:
    # From the Redis Cluster specification: crc16("123456789") == 0x31C3.
    assert crc16(b"123456789") == 0x31C3
    assert key_slot("foo") == 12182  # CLUSTER KEYSLOT foo
    assert key_slot("{user1000}.following") == key_slot("{user1000}.followers")


def test_bucket_tags_spread_evenly_over_the_slot_space() -> None:
    for b in range(BUCKETS):
        slot = key_slot(bucket_tag(b))
        assert b * SLOTS // BUCKETS <= slot < (b + 1) * SLOTS // BUCKETS


def test_every_key_of_an_account_shares_one_slot_with_its_bucket_index() -> None:
    for aid in ("acme", "globex", "ü-ñ", "x" * 128):
        slots = {key_slot(k) for k in (keys.account(aid), keys.history_archive(aid),
                                       keys.applied_events(aid), keys.due_index_of(aid),
                                       keys.outbox_of(aid))}
        assert len(slots) == 1
        assert 0 <= bucket_of(aid) < BUCKETS
