"""Client SDK for applications: sync `Client` and asyncio `AsyncClient`.

Both carry default deadlines, retry only idempotent calls, send a bearer token and an
`x-request-id`, speak TLS or mutual TLS, and answer the login question locally by a
`Fallback` policy when the sidecar cannot be reached.
"""

from sessiongate.client.aio import AsyncClient
from sessiongate.client.config import ClientConfig, Fallback
from sessiongate.client.sync import Client

__all__ = ["AsyncClient", "Client", "ClientConfig", "Fallback"]
