"""The sidecar's HTTP endpoints (aiohttp): the standing page, forward auth."""
