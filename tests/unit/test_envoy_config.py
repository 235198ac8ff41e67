"""deploy/envoy/envoy.yaml is a valid Envoy bootstrap and wires ext_authz to sessiongate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

# Registered so that the typed_config `@type`s of the file resolve while parsing.
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.extensions.access_loggers.stream.v3 import stream_pb2  # noqa: F401
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401
from google.protobuf import json_format

from sessiongate.config import Settings
from sessiongate.service.envoy_authz import JWT_AUTHN_NAMESPACE, SERVICE_NAME


@pytest.fixture
def config(repo_root: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((repo_root / "deploy/envoy/envoy.yaml").read_text())
    return loaded


def test_the_file_parses_as_an_envoy_v3_bootstrap(config: dict[str, Any]) -> None:
    """Every field name, type and enum value is checked against Envoy's own protos."""
    json_format.ParseDict(config, bootstrap_pb2.Bootstrap())


def typed(config: dict[str, Any], message: Any) -> Any:
    """A typed_config parsed as `message` (its `@type` says which; checked here)."""
    assert config["@type"] == "type.googleapis.com/" + message.DESCRIPTOR.full_name
    return json_format.ParseDict({k: v for k, v in config.items() if k != "@type"}, message)


def _filters(config: dict[str, Any]) -> list[dict[str, Any]]:
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    filters: list[dict[str, Any]] = hcm["typed_config"]["http_filters"]
    return filters


def test_ext_authz_asks_sessiongate_over_grpc(config: dict[str, Any]) -> None:
    filters = _filters(config)
    names = [f["name"] for f in filters]
    assert names.index("envoy.filters.http.ext_authz") < names.index("envoy.filters.http.router")
    authz = filters[names.index("envoy.filters.http.ext_authz")]["typed_config"]
    msg = typed(authz, ext_authz_pb2.ExtAuthz())
    assert msg.transport_api_version == config_source_pb2.V3
    assert msg.grpc_service.timeout.ToMilliseconds() == 250
    assert not msg.HasField("with_request_body")
    grpc_service = authz["grpc_service"]
    assert grpc_service["envoy_grpc"]["cluster_name"] == "sessiongate"
    assert grpc_service["timeout"] == "0.25s"
    assert grpc_service["initial_metadata"][0]["key"] == "authorization"
    assert grpc_service["initial_metadata"][0]["value"].startswith("Bearer ")
    assert authz["failure_mode_allow"] is False
    assert authz["status_on_error"]["code"] == "ServiceUnavailable"
    assert "with_request_body" not in authz  # bodies are never buffered for a session check
    allowed = {p["exact"] for p in authz["allowed_headers"]["patterns"]}
    defaults = Settings()
    assert {defaults.envoy_account_header, defaults.envoy_user_header} <= allowed
    assert authz["metadata_context_namespaces"] == [JWT_AUTHN_NAMESPACE]


def test_sessiongate_cluster_speaks_http2_and_probes_the_authz_service(
    config: dict[str, Any]
) -> None:
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    sg = clusters["sessiongate"]
    opts = sg["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in opts["explicit_http_config"]
    assert sg["health_checks"][0]["grpc_health_check"]["service_name"] == SERVICE_NAME
    endpoint = sg["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"]["port_value"] == 50051


def test_probe_route_skips_the_check(config: dict[str, Any]) -> None:
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    parsed = typed(hcm["typed_config"], hcm_pb2.HttpConnectionManager())
    routes = parsed.route_config.virtual_hosts[0].routes
    healthz = next(r for r in routes if r.match.path == "/healthz")
    per_route = ext_authz_pb2.ExtAuthzPerRoute()
    assert healthz.typed_per_filter_config["envoy.filters.http.ext_authz"].Unpack(per_route)
    assert per_route.disabled


def test_jwt_authn_example_in_the_docs_is_valid_and_feeds_our_metadata_key(
    repo_root: Path
) -> None:
    text = (repo_root / "docs/envoy.md").read_text()
    block = next(b for b in text.split("```yaml")[1:] if "jwt_authn" in b).split("```")[0]
    (entry,) = yaml.safe_load(block)
    json_format.ParseDict(entry, hcm_pb2.HttpFilter())
    assert entry["name"] == JWT_AUTHN_NAMESPACE
    jwt = typed(entry["typed_config"], jwt_pb2.JwtAuthentication())
    assert jwt.providers["idp"].payload_in_metadata == "jwt_payload"
