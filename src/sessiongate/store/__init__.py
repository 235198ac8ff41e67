"""Redis adapters: key names, Lua scripts, codecs, the near-cache, the embedded server."""
