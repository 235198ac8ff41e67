"""The sidecar's HTTP endpoints (aiohttp, in its own event loop): forward auth for proxies,
the standing page."""
