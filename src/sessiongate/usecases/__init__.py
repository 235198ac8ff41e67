"""Use-cases: what the servicers (service/, http/) ask of the model, apart from gRPC and
Redis. Each is built once by app.py over the ports (sessiongate/ports.py)."""
