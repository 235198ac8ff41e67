"""gRPC adapters: servicers, the per-RPC wrapper (auth, access log, status mapping), conversion."""
