"""The pure domain: accounts, decisions, ledgers, dunning. No grpc, no redis, no I/O."""
