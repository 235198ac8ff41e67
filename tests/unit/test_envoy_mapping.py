"""How a CheckRequest maps to a login: pure parsing, no server needed."""

from __future__ import annotations

import pytest
from envoy.service.auth.v3 import external_auth_pb2 as ext

from sessiongate.config import Settings
from sessiongate.domain.errors import InvalidArgument
from sessiongate.service.envoy_authz import (
    Identity,
    RequestMapper,
    check_request,
    claim_value,
    decode_jwt_payload,
)


def mapper(**overrides: str) -> RequestMapper:
    return RequestMapper(Settings.from_env({}, **overrides))


@pytest.mark.parametrize(
    ("path", "feature"),
    [
        ("/features/reports", "reports"),
        ("/features/reports/q3?x=/features/other", "reports"),
        ("/features/a%20b/", "a b"),
        ("/features/", ""),
        ("/other/features/x", ""),
        ("/", ""),
    ],
)
def test_default_feature_comes_from_the_path(path: str, feature: str) -> None:
    assert mapper().identity(check_request("acme", "alice", path)) == Identity(
        "acme", "alice", feature)


def test_feature_pattern_without_group_takes_the_whole_match_and_empty_means_none() -> None:
    assert mapper(envoy_feature_pattern=r"(?<=^/f/)\w+").identity(
        check_request("a", "u", "/f/export/1")).feature == "export"
    assert mapper(envoy_feature_pattern="").identity(
        check_request("a", "u", "/features/x")).feature == ""


def test_raw_header_map_is_read_when_envoy_encodes_raw_headers() -> None:
    req = ext.CheckRequest()
    http = req.attributes.request.http
    http.path = "/"
    http.header_map.headers.add(key="X-Account-Id", raw_value=b"acme")
    http.header_map.headers.add(key="x-user-id", raw_value=b"alice")
    assert mapper().identity(req) == Identity("acme", "alice", "")


def test_bad_configuration_names_the_variable() -> None:
    with pytest.raises(InvalidArgument) as err:
        mapper(envoy_feature_pattern="(")
    assert err.value.field == "SESSIONGATE_ENVOY_FEATURE_PATTERN"
    with pytest.raises(InvalidArgument) as err:
        mapper(envoy_user_header="")
    assert err.value.field == "SESSIONGATE_ENVOY_USER_HEADER"
    # a claim may replace the header, but only when a JWT source is on
    mapper(envoy_user_header="", envoy_jwt_metadata_key="jwt_payload")


def test_claims_and_payloads() -> None:
    payload = {"sub": "alice", "org": {"id": 42.0}, "admin": True, "n": 1.5}
    assert claim_value(payload, "sub") == "alice"
    assert claim_value(payload, "org.id") == "42"
    for claim, problem in [("admin", "not a string"), ("n", "not a string"),
                           ("org.name", "missing"), ("sub.x", "missing")]:
        with pytest.raises(InvalidArgument) as err:
            claim_value(payload, claim)
        assert (err.value.field, err.value.problem) == (f"claim {claim}", problem)
    assert decode_jwt_payload("h", "eyJzdWIiOiJhbGljZSJ9") == {"sub": "alice"}  # unpadded
    assert decode_jwt_payload("h", "e30") == {}
    for bad in ("WyJ4Il0", "not json!"):  # a JSON list; not base64url JSON at all
        with pytest.raises(InvalidArgument) as err:
            decode_jwt_payload("h", bad)
        assert err.value.field == "h"
