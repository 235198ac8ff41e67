"""Fuzz every RPC (SessionControl, Billing, Accounts, Envoy ext_authz) with malformed messages.

Messages are generated from the proto descriptors, so a method or field added later is fuzzed
too: ids with control characters, huge strings, unknown enum numbers, negative and extreme
numbers, out-of-range timestamps, random nesting. For every call:
- the status is never UNKNOWN or INTERNAL (UNIMPLEMENTED is tolerated: methods still being
  built by other issues);
- a refused call writes nothing (the Redis dataset digest is unchanged);
- the server stays up (health SERVING after each method's run).
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from typing import Any

import grpc
import hypothesis.strategies as st
import pytest
import redis
from envoy.service.auth.v3 import external_auth_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import billing_pb2, session_control_pb2
from sessiongate.store.batch import BatchWriter
from tests.support import ServerThread, make_settings

SERVICES = [
    session_control_pb2.DESCRIPTOR.services_by_name["SessionControl"],
    billing_pb2.DESCRIPTOR.services_by_name["Billing"],
    apb.DESCRIPTOR.services_by_name["Accounts"],
    external_auth_pb2.DESCRIPTOR.services_by_name["Authorization"],  # Envoy ext_authz Check
]
METHODS = [m for s in SERVICES for m in s.methods]
NEVER = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}

NASTY_STRINGS = [
    "", " ", "acme", "alice", "acme ", " acme", "a\x00b", "a\tb", "a\nb", "\x7f", "\u202e",
    "\ud7ff", "é", "x" * 128, "x" * 129, "x" * 70_000, "y" * (5 << 20),  # > 4 MiB: too big
    "USD", "usd", "EU", "ACTIVE", "inv-1",
    "P1D", "-1", "1e309", "NaN", "a@b.c", "@", "default", "pro", "seats", "Europe/Paris",
    "Mars/Olympus", "../../etc/passwd", "*", "sg:{b0.x}:account", "\\", "%s%n",
    "x-account-id", "x-user-id", "/features/api",  # Envoy ext_authz header and path names
]
INT_EDGES = [0, 1, -1, 2, 7, -(2**31), 2**31 - 1, -(2**63), 2**63 - 1]


def _scalar(f: FieldDescriptor) -> st.SearchStrategy[Any]:
    t = f.type
    if t == FieldDescriptor.TYPE_STRING:
        return st.one_of(st.sampled_from(NASTY_STRINGS), st.text(max_size=12))
    if t == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=16)
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in f.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-3, 40))
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(width=64 if t == FieldDescriptor.TYPE_DOUBLE else 32)
    if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return st.one_of(st.sampled_from([0, 1, 2**32 - 1]), st.integers(0, 2**32 - 1))
    if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return st.one_of(st.sampled_from([0, 1, 2**64 - 1]), st.integers(0, 2**64 - 1))
    if t in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32,
             FieldDescriptor.TYPE_SFIXED32):
        return st.one_of(st.sampled_from(INT_EDGES[:7]), st.integers(-(2**31), 2**31 - 1))
    return st.one_of(st.sampled_from(INT_EDGES), st.integers(-(2**63), 2**63 - 1))


def _timestamp() -> st.SearchStrategy[dict[str, Any]]:
    seconds = st.one_of(
        st.integers(1_700_000_000, 1_900_000_000),  # plausible dates
        st.sampled_from([0, -1, -62_135_596_801, 253_402_300_800, -(2**63), 2**63 - 1]),
    )
    nanos = st.one_of(st.just(0), st.integers(-(2**31), 2**31 - 1))
    return st.fixed_dictionaries({"seconds": seconds, "nanos": nanos})


def message_values(desc: Descriptor, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """A dict of field name -> value (nested dicts for messages) for a message type."""
    if desc.full_name == "google.protobuf.Timestamp":
        return _timestamp()
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for f in desc.fields:
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            key_f, val_f = f.message_type.fields_by_name["key"], f.message_type.fields_by_name[
                "value"]
            if val_f.message_type is not None:
                continue
            fields[f.name] = st.dictionaries(_scalar(key_f), _scalar(val_f), max_size=3)
        elif f.message_type is not None:
            if depth >= 3:
                continue
            sub = message_values(f.message_type, depth + 1)
            if f.is_repeated:
                fields[f.name] = st.lists(sub, max_size=3)
            else:
                fields[f.name] = sub
        elif f.is_repeated:
            fields[f.name] = st.lists(_scalar(f), max_size=4)
        else:
            fields[f.name] = _scalar(f)
    # Each field independently present or absent.
    return st.fixed_dictionaries({}, optional=fields)


def fill(msg: Message, values: dict[str, Any]) -> Message:
    for name, value in values.items():
        f = msg.DESCRIPTOR.fields_by_name[name]
        target = getattr(msg, name)
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            target.update(value)
        elif f.message_type is not None and f.is_repeated:
            for v in value:
                fill(target.add(), v)
        elif f.message_type is not None:
            fill(target, value)
            if not value:
                target.SetInParent()
        elif f.is_repeated:
            target.extend(value)
        else:
            setattr(msg, name, value)
    return msg


def _serialize(msg: Message) -> bytes:
    return msg.SerializeToString()


def request_class(method: MethodDescriptor) -> type[Message]:
    return message_factory.GetMessageClass(method.input_type)


def call(
    channel: grpc.Channel, method: MethodDescriptor, requests: list[Message]
) -> grpc.StatusCode:
    path = f"/{method.containing_service.full_name}/{method.name}"
    out = message_factory.GetMessageClass(method.output_type)
    try:
        if method.client_streaming:
            channel.stream_unary(path, request_serializer=_serialize,
                                 response_deserializer=out.FromString)(iter(requests), timeout=20)
        else:
            channel.unary_unary(path, request_serializer=_serialize,
                                response_deserializer=out.FromString)(requests[0], timeout=20)
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


HEADROOM = 4 << 30  # address space the fuzzed server may grow by: far above any real request


@pytest.fixture(scope="module")
def fuzz_server(redis_url: str) -> Iterator[ServerThread]:
    """The server, in a process capped at its size now plus HEADROOM while the fuzz runs: an
    input that makes it allocate without bound (a seat limit of 2^31-1 once spelled out
    every seat) fails as a MemoryError -> INTERNAL here, instead of the kernel killing CI."""
    srv = ServerThread(make_settings(redis_url, scheduler=False)).start()
    before = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (size + HEADROOM, before[1]))
    try:
        yield srv
    finally:
        resource.setrlimit(resource.RLIMIT_AS, before)
        srv.stop()


def settle(srv: ServerThread) -> None:
    """Write out what the batch writer queued (records of allowed logins) before a snapshot."""
    for c in srv.app.components:
        if isinstance(c, BatchWriter):
            srv.call(c.flush())


def digest(r: redis.Redis) -> object:
    """A digest of the whole dataset; keys and their DUMPs where DEBUG is disabled (Redis 7)."""
    try:
        return r.execute_command("DEBUG", "DIGEST")
    except redis.ResponseError:
        return sorted((k, r.dump(k)) for k in r.scan_iter(count=1000))


@pytest.mark.parametrize("method", METHODS, ids=[f"{m.containing_service.name}.{m.name}"
                                                 for m in METHODS])
def test_fuzz_rpc(method: MethodDescriptor, fuzz_server: ServerThread,
                  redis_client: redis.Redis) -> None:
    srv = fuzz_server
    assert srv.channel is not None
    srv.accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(
        account_id="acme", users=["alice"], seat_limit=2)))
    cls = request_class(method)
    batch = st.lists(message_values(method.input_type), min_size=1,
                     max_size=3 if method.client_streaming else 1)
    seen: set[grpc.StatusCode] = set()

    @settings(max_examples=50, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(batch)
    def run(values: list[dict[str, Any]]) -> None:
        requests = [fill(cls(), v) for v in values]
        settle(srv)
        before = digest(redis_client)
        code = call(srv.channel, method, requests)  # type: ignore[arg-type]
        seen.add(code)
        assert code not in NEVER, (method.name, code, requests)
        settle(srv)
        if code != grpc.StatusCode.OK:
            assert digest(redis_client) == before, (method.name, code, requests)

    run()
    health = health_pb2_grpc.HealthStub(srv.channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == (
        health_pb2.HealthCheckResponse.SERVING)
    assert seen, method.name
