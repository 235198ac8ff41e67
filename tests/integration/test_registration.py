"""Only the hot methods are pre-registered; every other method is served all the same."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import grpc.aio._server
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from sessiongate.api.v1 import session_control_pb2 as pb
from sessiongate.api.v1 import session_control_pb2_grpc as pb_grpc
from sessiongate.service.registration import HOT_METHODS, add_services
from tests.support import ServerThread, make_settings


class Answers(pb_grpc.SessionControlServicer):
    async def CheckSession(self, request: pb.CheckSessionRequest, context: Any
                           ) -> pb.CheckSessionResponse:
        return pb.CheckSessionResponse(message=f"check {request.user_id}")

    async def Heartbeat(self, request: pb.HeartbeatRequest, context: Any
                        ) -> pb.HeartbeatResponse:
        return pb.HeartbeatResponse(message=f"heartbeat {request.session_id}")


def test_hot_and_other_methods_are_both_served_over_a_real_socket() -> None:
    assert "/sessiongate.api.v1.SessionControl/CheckSession" in HOT_METHODS
    assert "/sessiongate.api.v1.SessionControl/Heartbeat" not in HOT_METHODS

    async def main() -> tuple[str, str, grpc.StatusCode]:
        server = grpc.aio.server()
        add_services(server, [(pb_grpc.add_SessionControlServicer_to_server, Answers())])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                stub = pb_grpc.SessionControlStub(ch)
                hot = await stub.CheckSession(pb.CheckSessionRequest(user_id="u"), timeout=5)
                other = await stub.Heartbeat(pb.HeartbeatRequest(session_id="s"), timeout=5)
                try:  # not implemented by Answers: the generic handler answers for it
                    await stub.EndSession(pb.EndSessionRequest(session_id="s"), timeout=5)
                    missing = grpc.StatusCode.OK
                except grpc.aio.AioRpcError as exc:
                    missing = exc.code()
                return hot.message, other.message, missing
        finally:
            await server.stop(None)

    assert asyncio.run(main()) == ("check u", "heartbeat s", grpc.StatusCode.UNIMPLEMENTED)


def test_the_server_pre_registers_only_the_hot_methods(
        monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    """Every service of the real server, reflection's and health's included, goes through the
    hot-methods view: each pre-registered method is a pending call every RPC waits on."""
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
    assert sorted(registered) == sorted(HOT_METHODS)
    assert {"sessiongate.api.v1.SessionControl", "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection"} <= served
