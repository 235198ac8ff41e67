"""Remembered token verdicts answer exactly as a fresh constant-time check would."""

from __future__ import annotations

import pytest

from sessiongate.domain.errors import PermissionDenied, Unauthenticated
from sessiongate.service.auth import MAX_REMEMBERED, Authenticator


def test_repeated_headers_get_the_same_answers() -> None:
    auth = Authenticator({"app": ["a"], "billing": ["b"], "admin": ["a", "z"]})
    for _ in range(3):
        assert auth.check_header("Bearer a", "app") == "app"
        assert auth.check_header(b"Bearer a", "admin") == "admin"
        assert auth.check_header("bearer  b ", "billing") == "billing"
        with pytest.raises(PermissionDenied, match="role admin may not call billing"):
            auth.check_header("Bearer z", "billing")
        with pytest.raises(Unauthenticated, match="invalid bearer token"):
            auth.check_header("Bearer q", "app")
        with pytest.raises(Unauthenticated, match="missing bearer token"):
            auth.check_header(None, "app")
        with pytest.raises(Unauthenticated, match="missing bearer token"):
            auth.check_header("Basic a", "app")


def test_only_verified_headers_are_remembered_and_the_table_is_bounded() -> None:
    auth = Authenticator({"app": [f"t{i}" for i in range(MAX_REMEMBERED + 10)]})
    for i in range(200):
        with pytest.raises(Unauthenticated):
            auth.check_header(f"Bearer junk{i}", "app")
    for i in range(MAX_REMEMBERED + 10):  # past the bound: still checked, just not remembered
        assert auth.check_header(f"Bearer t{i}", "app") == "app"
    assert len(auth.verified) == MAX_REMEMBERED
    assert all(header.startswith("Bearer t") for header in auth.verified)


def test_tokens_given_alone_get_the_same_roles_remembered_or_not() -> None:
    """/authz's proxy token (`token_roles`): valid ones remembered, within the same bound."""
    auth = Authenticator({"app": [f"t{i}" for i in range(MAX_REMEMBERED + 10)] + ["a"],
                          "admin": ["a"]})
    for _ in range(2):
        assert auth.token_roles(" a ") == auth.token_roles("a") == frozenset({"app", "admin"})
        assert auth.token_roles("junk") == frozenset()
    for i in range(MAX_REMEMBERED + 10):
        assert auth.token_roles(f"t{i}") == frozenset({"app"})
        assert auth.token_roles(f"t{i}") == frozenset({"app"})
    assert auth.token_roles("junk") == frozenset()
