"""The sidecar's HTTP endpoint (aiohttp, in its own event loop): forward auth for proxies."""
