"""How the gRPC server finds its methods: one table, nothing pre-registered.

grpc.aio's server keeps one pending "request call" per pre-registered method, plus one for
all the others, and waits for the next call with `asyncio.wait` over all of them: every
RPC pays for every registered method (a done-callback added and removed on each, ~0.2 us
apiece in Python). And a pre-registered method's call never reaches the generic handlers,
which are the only place that sees the call's metadata as grpc has already built it (for
the handler lookup): a handler that reads `context.invocation_metadata()` has it built a
second time (a namedtuple per header; ~4 % of the near-cache check's GIL time, py-spy,
docs/performance.md, "What was tried", row "Nothing pre-registered").

So the generated `add_*Servicer_to_server` functions see a view of the server (`MethodTable`)
that keeps every method in one dictionary, served by a single generic handler placed first:
it records the call's metadata in `call_metadata` (a context variable: each RPC runs in its
own task) and returns the method's handler. The generated generic handlers are passed
through behind it (they answer nothing the table does not). A method may be served `raw`:
its handler may answer bytes, and gets the request's bytes unless told otherwise
(CheckSession's and Envoy Check's hot paths, service/wire.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

import grpc

# The current RPC's invocation metadata, as grpc built it for the handler lookup; None
# outside an RPC resolved by a `MethodTable` (then read `context.invocation_metadata()`).
call_metadata: ContextVar[tuple[tuple[str, Any], ...] | None] = ContextVar(
    "call_metadata", default=None)


class MethodTable:
    """Every method's handler by its full name ("/service/method"), as the generic handler
    of a server; to the generated `add_*Servicer_to_server(servicer, server)` functions it
    looks like the server (`add_registered_method_handlers` fills the table)."""

    def __init__(self, server: Any) -> None:
        self._server = server
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}
        server.add_generic_rpc_handlers((self,))

    def service(self, handler_call_details: Any) -> grpc.RpcMethodHandler | None:
        call_metadata.set(handler_call_details.invocation_metadata)
        return self.handlers.get(handler_call_details.method)

    def add_generic_rpc_handlers(self, handlers: Sequence[Any]) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def raw(self, method: str, serializer: Callable[[Any], bytes], *,
            requests: bool = True) -> None:
        """Serve `method` ("/service/method") with `serializer` writing its responses (which
        may be bytes: service/wire.py) and, with `requests`, without deserializing its
        requests: its handler gets the bytes."""
        handler = self.handlers[method]
        self.handlers[method] = handler._replace(  # grpc's handlers are named tuples
            response_serializer=serializer,
            request_deserializer=None if requests else handler.request_deserializer)

    def add_registered_method_handlers(self, service: str,
                                       handlers: Mapping[str, grpc.RpcMethodHandler]) -> None:
        for method, handler in handlers.items():
            self.handlers[f"/{service}/{method}"] = handler


def add_services(server: Any, adders: Sequence[tuple[Callable[[Any, Any], None], Any]]
                 ) -> MethodTable:
    """`add(servicer, server)` for each (add, servicer), into one `MethodTable`."""
    table = MethodTable(server)
    for add, servicer in adders:
        add(servicer, table)
    return table
