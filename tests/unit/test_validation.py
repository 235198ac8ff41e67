from __future__ import annotations

import pytest

from sessiongate.domain.errors import InvalidArgument
from sessiongate.domain.validation import MAX_ID_LENGTH, check_id


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "must not be empty"),
        ("x" * (MAX_ID_LENGTH + 1), "longer than"),
        ("acme\n", "whitespace"),
        ("ac\x00me", "control character U+0000"),
        ("ac\x1bme", "control character U+001B"),
        ("ac\u200bme", "U+200B"),
        (" acme", "whitespace"),
    ],
)
def test_bad_ids_are_rejected_naming_the_field(value: str, problem: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        check_id("account_id", value)
    assert err.value.field == "account_id"
    assert problem in str(err.value)
    assert str(err.value).startswith("account_id:")


@pytest.mark.parametrize("value", ["acme", "user@example.com", "Zoë-Ω_1", "x" * MAX_ID_LENGTH])
def test_good_ids_pass(value: str) -> None:
    assert check_id("user_id", value) == value


def test_optional_id_may_be_empty() -> None:
    assert check_id("policy_id", "", required=False) == ""
