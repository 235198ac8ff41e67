"""The floor: CheckSession answered with an empty response, on the same grpc.aio stack (and
RecordUsageStream reading its messages and recording nothing, Envoy's ext_authz Check its
request parsed and an empty CheckResponse); with `--http`, `/authz` answered with an empty
200 on the same aiohttp server setup (`http.server.HttpServer`).

Same service, method and request bytes as the real server, same `grpc.aio.server` options and
method registration as `app.py`; no auth, no log, no lookup. What the real handler costs
beyond this is ours.

    python -m bench.floor --port P [--http]
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import grpc
from aiohttp import web
from envoy.service.auth.v3 import external_auth_pb2 as ext
from envoy.service.auth.v3 import external_auth_pb2_grpc as ext_grpc

from sessiongate.api.v1 import session_control_pb2 as pb
from sessiongate.api.v1 import session_control_pb2_grpc as pb_grpc
from sessiongate.http.authz import PATH
from sessiongate.http.server import HttpServer
from sessiongate.service.registration import add_services


class Floor(pb_grpc.SessionControlServicer):
    async def CheckSession(self, request: pb.CheckSessionRequest, context: Any
                           ) -> pb.CheckSessionResponse:
        return pb.CheckSessionResponse()

    async def RecordUsageStream(self, request: Any, context: Any
                                ) -> pb.RecordUsageBatchResponse:
        """The usage stream's floor: read every message, record nothing."""
        n = 0
        async for _ in request:
            n += 1
        return pb.RecordUsageBatchResponse(accepted=n)


class EnvoyFloor:
    """Envoy's Check: without it the floor answered UNIMPLEMENTED, without reading the
    request, a floor below any handler's."""

    async def Check(self, request: Any, context: Any) -> Any:
        return ext.CheckResponse()


async def serve(port: int) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])  # as app.py, one worker
    # Registered as app.py registers its services: one method table, nothing pre-registered.
    add_services(server, [(pb_grpc.add_SessionControlServicer_to_server, Floor()),
                          (ext_grpc.add_AuthorizationServicer_to_server, EnvoyFloor())])
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def empty(request: web.Request) -> web.Response:
    return web.Response(status=200)


async def serve_http(port: int) -> None:
    """The HTTP floor: `/authz` on the sidecar's own HTTP server setup, answering nothing."""
    http = HttpServer(f"127.0.0.1:{port}")
    http.add_routes([web.route("*", PATH, empty)])
    await http.start()
    try:
        await asyncio.Event().wait()
    finally:
        await http.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--http", action="store_true", help="the HTTP floor (/authz)")
    args = parser.parse_args()
    asyncio.run(serve_http(args.port) if args.http else serve(args.port))


if __name__ == "__main__":
    main()
