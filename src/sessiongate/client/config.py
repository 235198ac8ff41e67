"""Client settings, the fallback policy, and what the sync and async clients share."""

from __future__ import annotations

import os
import pathlib
import random
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as spb

# Codes after which the sidecar may not have answered: retried (idempotent calls only), and
# the ones that trigger the local fallback of the login check. CANCELLED reaches a caller
# only from the server's side (cancelling a call of one's own raises otherwise): a draining
# server cancels the calls it had received but not yet started, as if it were unreachable.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                       grpc.StatusCode.CANCELLED})
FALLBACK_MODES = ("deny", "allow", "last_known")


@dataclass(frozen=True)
class Fallback:
    """How `check_session` answers when the sidecar is unreachable (after the retries).

    `deny` (default) and `allow` answer by rule; `last_known` repeats this process's last
    answer for the same account and user if younger than `max_age` seconds, else denies.
    Every fallback answer has `source = STATE_SOURCE_FAILURE_MODE` (or `STALE` for a
    remembered one) and says why in `message`.
    """

    mode: str = "deny"
    max_age: float = 300.0

    def __post_init__(self) -> None:
        if self.mode not in FALLBACK_MODES:
            raise ValueError(f"fallback mode must be one of {', '.join(FALLBACK_MODES)}")


@dataclass(frozen=True)
class ClientConfig:
    addr: str = "127.0.0.1:50051"
    token: str = ""
    timeout: float = 2.0  # default deadline of each attempt, seconds
    max_attempts: int = 3  # idempotent calls only; others are tried once
    backoff: float = 0.05  # first retry delay, doubled each time, with jitter
    tls: bool = False
    tls_ca: bytes | None = None  # PEM; None: the system roots (when tls)
    tls_cert: bytes | None = None  # client certificate chain (PEM), for mutual TLS
    tls_key: bytes | None = None
    server_name: str = ""  # TLS name to verify, when it differs from the address's host
    fallback: Fallback = field(default_factory=Fallback)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ClientConfig:
        """SESSIONGATE_ADDR, SESSIONGATE_TOKEN (or SESSIONGATE_TOKEN_FILE), SESSIONGATE_TLS_CA."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if env.get("SESSIONGATE_ADDR"):
            values["addr"] = env["SESSIONGATE_ADDR"]
        if env.get("SESSIONGATE_TOKEN"):
            values["token"] = env["SESSIONGATE_TOKEN"]
        elif env.get("SESSIONGATE_TOKEN_FILE"):
            text = pathlib.Path(env["SESSIONGATE_TOKEN_FILE"]).read_text()
            values["token"] = text.strip().split(",")[0].strip()
        if env.get("SESSIONGATE_TLS_CA"):
            values["tls"] = True
            values["tls_ca"] = pathlib.Path(env["SESSIONGATE_TLS_CA"]).read_bytes()
        values.update(overrides)
        return cls(**values)

    def credentials(self) -> grpc.ChannelCredentials | None:
        if not (self.tls or self.tls_ca or self.tls_cert):
            return None
        return grpc.ssl_channel_credentials(self.tls_ca, self.tls_key, self.tls_cert)

    def options(self) -> list[tuple[str, Any]]:
        opts: list[tuple[str, Any]] = [("grpc.keepalive_time_ms", 30_000)]
        if self.server_name:
            opts.append(("grpc.ssl_target_name_override", self.server_name))
        return opts

    def metadata(self, extra: Any = None) -> list[tuple[str, str]]:
        md = [("x-request-id", uuid.uuid4().hex)]
        if self.token:
            md.append(("authorization", f"Bearer {self.token}"))
        if extra:
            md.extend(extra)
        return md

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        base: float = self.backoff * (2 ** (attempt - 1))
        return float(base * (0.5 + random.random()))


class Memory:
    """Last answers per (account, user), for the `last_known` fallback. Thread-safe."""

    def __init__(self, limit: int = 100_000) -> None:
        self._answers: dict[tuple[str, str], tuple[float, spb.CheckSessionResponse]] = {}
        self._lock = threading.Lock()
        self._limit = limit

    def remember(self, account_id: str, user_id: str, resp: spb.CheckSessionResponse) -> None:
        if resp.source in (cpb.STATE_SOURCE_FAILURE_MODE, cpb.STATE_SOURCE_STALE):
            return  # only first-hand answers are worth repeating
        with self._lock:
            if len(self._answers) >= self._limit:
                self._answers.pop(next(iter(self._answers)))
            self._answers[(account_id, user_id)] = (time.monotonic(), resp)

    def recall(self, account_id: str, user_id: str,
               max_age: float) -> tuple[float, spb.CheckSessionResponse] | None:
        with self._lock:
            found = self._answers.get((account_id, user_id))
        if found is None or time.monotonic() - found[0] > max_age:
            return None
        return time.monotonic() - found[0], found[1]


def fallback_answer(cfg: ClientConfig, memory: Memory, account_id: str, user_id: str,
                    error: grpc.RpcError) -> spb.CheckSessionResponse:
    """The local answer to the login question when the sidecar did not give one."""
    why = f"sessiongate unreachable ({error.code().name})"
    policy = cfg.fallback
    if policy.mode == "last_known":
        found = memory.recall(account_id, user_id, policy.max_age)
        if found is not None:
            age, last = found
            resp = spb.CheckSessionResponse()
            resp.CopyFrom(last)
            resp.session_id = ""
            resp.source = cpb.STATE_SOURCE_STALE
            resp.state_age_ms = last.state_age_ms + int(age * 1000)
            resp.message = f"{why}; last known answer: {last.message}"
            return resp
    allow = policy.mode == "allow"
    return spb.CheckSessionResponse(
        decision=cpb.DECISION_ALLOW if allow else cpb.DECISION_DENY,
        reason=cpb.REASON_BACKEND_UNAVAILABLE,
        source=cpb.STATE_SOURCE_FAILURE_MODE,
        message=f"{why}; client fallback {policy.mode}: {'allowed' if allow else 'denied'}",
    )


# Events per message of `record_usage_batch`: a gRPC message costs the server far more than
# recording an event, so a batch of them goes in few messages.
USAGE_EVENTS_PER_MESSAGE = 500


def usage_batches(events: Sequence[spb.UsageEvent], per_message: int
                  ) -> list[spb.UsageBatch]:
    """`events` cut into `UsageBatch` messages of `per_message` events at most."""
    size = max(1, per_message)
    return [spb.UsageBatch(events=events[i:i + size]) for i in range(0, len(events), size)]
