"""Which methods the gRPC server pre-registers: the hot ones only.

grpc.aio's server keeps one pending "request call" per pre-registered method, plus one for
all the others, and waits for the next call with `asyncio.wait` over all of them: every
RPC pays for every registered method (a done-callback added and removed on each, ~0.2 us
apiece in Python). The generated `add_*Servicer_to_server` functions pre-register every
method of a service; with five services that was ~22 pending calls per RPC, ~186 Python
calls more per login check (docs/performance.md, "gRPC method registration"). A method left
unregistered is served all the same, through the generic handlers that the same functions
add (a dictionary lookup by name).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

# Every login. Envoy's ext_authz Check, the other per-request method, was pre-registered too
# until 4 Dec 2026: served generically it costs the same CPU per check (224 vs 225 us, paired
# rounds: the name lookup costs what the pending call saved), while its pending call cost
# every CheckSession 1-3 us (docs/performance.md, "Sixth pass").
HOT_METHODS = frozenset({
    "/sessiongate.api.v1.SessionControl/CheckSession",
})


class HotMethodsOnly:
    """A server as the generated `add_*Servicer_to_server(servicer, server)` see it: generic
    handlers pass through, pre-registration only for `hot` methods ("/service/method")."""

    def __init__(self, server: Any, hot: Collection[str] = HOT_METHODS) -> None:
        self._server = server
        self._hot = hot

    def add_generic_rpc_handlers(self, handlers: Sequence[Any]) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Any]
                                       ) -> None:
        hot = {m: h for m, h in handlers.items() if f"/{service}/{m}" in self._hot}
        if hot:
            self._server.add_registered_method_handlers(service, hot)


def add_services(server: Any, adders: Sequence[tuple[Callable[[Any, Any], None], Any]],
                 hot: Collection[str] = HOT_METHODS) -> None:
    """`add(servicer, server)` for each (add, servicer), pre-registering only `hot`."""
    view = HotMethodsOnly(server, hot)
    for add, servicer in adders:
        add(servicer, view)
