"""The hand-made shortcuts of the login and usage paths equal what they replace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from sessiongate.domain.errors import InvalidArgument
from sessiongate.domain.periods import day_name, month_name
from sessiongate.domain.validation import check_id, is_plain_id
from sessiongate.service.convert import ts

ZONES = st.sampled_from([UTC, timezone(timedelta(hours=-7)), timezone(timedelta(hours=13)),
                         None])


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)), ZONES)
def test_ts_equals_from_datetime(when: datetime, zone: timezone | None) -> None:
    when = when.replace(tzinfo=zone)
    expected = Timestamp()
    expected.FromDatetime(when)
    assert ts(when) == expected


# From 1000 on: strftime writes year 999 as "999", these as "0999" (ISO 8601).
@given(st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30)), ZONES)
def test_day_and_month_names_are_the_utc_ones(when: datetime, zone: timezone | None) -> None:
    aware = when.replace(tzinfo=zone or UTC)
    assert day_name(aware) == f"{aware.astimezone(UTC):%Y-%m-%d}"
    assert month_name(aware) == f"{aware.astimezone(UTC):%Y-%m}"


@given(st.text(max_size=140))
def test_is_plain_id_agrees_with_check_id(value: str) -> None:
    try:
        check_id("f", value)
        valid = True
    except InvalidArgument:
        valid = False
    assert is_plain_id(value) == valid
