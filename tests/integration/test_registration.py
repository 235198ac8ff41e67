"""Every method is served through one `MethodTable`, nothing pre-registered, and a handler
reads its own call's metadata from `call_metadata` (as grpc built it for the lookup)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import grpc.aio._server
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from sessiongate.api.v1 import session_control_pb2 as pb
from sessiongate.api.v1 import session_control_pb2_grpc as pb_grpc
from sessiongate.service.auth import Authenticator
from sessiongate.service.registration import add_services, call_metadata
from sessiongate.service.rpc import Observer, Servicer, rpc
from tests.support import ServerThread, make_settings


class Answers(pb_grpc.SessionControlServicer):
    async def CheckSession(self, request: pb.CheckSessionRequest, context: Any
                           ) -> pb.CheckSessionResponse:
        """Answers with the x-id header as `call_metadata` gives it, before and after other
        calls ran on the loop, and as the context gives it."""
        before = call_metadata.get()
        await asyncio.sleep(0.01)  # the other calls' lookups run meanwhile
        after = call_metadata.get()
        assert before is not None and after is not None
        given = dict(context.invocation_metadata())["x-id"]
        return pb.CheckSessionResponse(
            message=f"{dict(before)['x-id']} {dict(after)['x-id']} {given}")

    async def Heartbeat(self, request: pb.HeartbeatRequest, context: Any
                        ) -> pb.HeartbeatResponse:
        return pb.HeartbeatResponse(message=f"heartbeat {request.session_id}")


async def _serve(add: Any) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    add(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


def test_each_call_sees_its_own_metadata_and_every_method_is_served() -> None:
    async def main() -> tuple[list[str], str, grpc.StatusCode]:
        server, port = await _serve(lambda s: add_services(
            s, [(pb_grpc.add_SessionControlServicer_to_server, Answers())]))
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                stub = pb_grpc.SessionControlStub(ch)
                checks = await asyncio.gather(*(
                    stub.CheckSession(pb.CheckSessionRequest(), metadata=[("x-id", str(i))],
                                      timeout=5) for i in range(20)))
                other = await stub.Heartbeat(pb.HeartbeatRequest(session_id="s"), timeout=5)
                try:  # not implemented by Answers: the generated base class answers
                    await stub.EndSession(pb.EndSessionRequest(session_id="s"), timeout=5)
                    missing = grpc.StatusCode.OK
                except grpc.aio.AioRpcError as exc:
                    missing = exc.code()
                return [c.message for c in checks], other.message, missing
        finally:
            await server.stop(None)

    messages, other, missing = asyncio.run(main())
    assert messages == [f"{i} {i} {i}" for i in range(20)]
    assert (other, missing) == ("heartbeat s", grpc.StatusCode.UNIMPLEMENTED)


class Guarded(Servicer, pb_grpc.SessionControlServicer):
    @rpc("app")
    async def Heartbeat(self, request: pb.HeartbeatRequest, context: Any
                        ) -> pb.HeartbeatResponse:
        return pb.HeartbeatResponse(message="ok")


@pytest.mark.parametrize("through_table", [True, False])
def test_the_wrapper_authenticates_with_or_without_the_table(through_table: bool) -> None:
    """Through the table the token comes from `call_metadata`; on a server that pre-registers
    the method (no table) from `context.invocation_metadata()`: the same answers."""
    servicer = Guarded(Authenticator({"app": ["app-token"]}), Observer(access_log=False))

    def add(server: Any) -> None:
        if through_table:
            add_services(server, [(pb_grpc.add_SessionControlServicer_to_server, servicer)])
        else:
            pb_grpc.add_SessionControlServicer_to_server(servicer, server)

    async def main() -> list[str]:
        server, port = await _serve(add)
        got = []
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                stub = pb_grpc.SessionControlStub(ch)
                for md in ([("authorization", "Bearer app-token")],
                           [("authorization", "Bearer wrong")], []):
                    try:
                        resp = await stub.Heartbeat(pb.HeartbeatRequest(), metadata=md,
                                                    timeout=5)
                        got.append(resp.message)
                    except grpc.aio.AioRpcError as exc:
                        got.append(exc.code().name)
        finally:
            await server.stop(None)
        return got

    assert asyncio.run(main()) == ["ok", "UNAUTHENTICATED", "UNAUTHENTICATED"]


def test_the_server_pre_registers_nothing(monkeypatch: pytest.MonkeyPatch,
                                          redis_url: str) -> None:
    """Every service of the real server, reflection's and health's included, goes through the
    table: a pre-registered method is a pending call every RPC waits on, and its calls'
    metadata would be built twice."""
    registered: list[str] = []
    real = grpc.aio._server.Server.add_registered_method_handlers

    def record(self: Any, service: str, handlers: dict[str, Any]) -> None:
        registered.extend(f"/{service}/{method}" for method in handlers)
        real(self, service, handlers)

    monkeypatch.setattr(grpc.aio._server.Server, "add_registered_method_handlers", record)
    srv = ServerThread(make_settings(redis_url)).start()
    try:
        reflection = reflection_pb2_grpc.ServerReflectionStub(srv.channel)
        (answer,) = list(reflection.ServerReflectionInfo(iter([
            reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=20))
        served = {s.name for s in answer.list_services_response.service}
    finally:
        srv.stop()
    assert registered == []
    assert {"sessiongate.api.v1.SessionControl", "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection"} <= served
