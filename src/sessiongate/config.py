"""One frozen settings object; the only reader of the environment.

Each field carries its environment variable and help text; `sessiongate serve --help` is
generated from them, so the documentation cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from typing import Any

from sessiongate.domain.errors import InvalidArgument
from sessiongate.domain.records import FailureMode
from sessiongate.domain.validation import check_emails, check_time_zone

FAILURE_MODES = tuple(m.value for m in FailureMode)
LOG_FORMATS = ("auto", "json", "console")


def _setting(default: Any, env: str, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"env": env, "help": help, **kw})


@dataclass(frozen=True)
class Settings:
    grpc_addr: str = _setting("127.0.0.1:50051", "SESSIONGATE_GRPC_ADDR", "gRPC listen address")
    redis_url: str = _setting(
        "", "SESSIONGATE_REDIS_URL",
        "Redis URL (redis:// or rediss://; redis+cluster:// for a Redis Cluster);"
        " empty: start an embedded redis-server",
    )
    redis_cluster: bool = _setting(
        False, "SESSIONGATE_REDIS_CLUSTER",
        "the Redis URL names one node of a Redis Cluster (same as a redis+cluster:// URL)",
    )
    data_dir: str = _setting(
        "./.sessiongate", "SESSIONGATE_DATA_DIR", "data directory of the embedded Redis"
    )
    log_level: str = _setting("info", "SESSIONGATE_LOG_LEVEL", "debug, info, warning, error")
    log_format: str = _setting(
        "auto", "SESSIONGATE_LOG_FORMAT", "json, console, or auto (console on a terminal)",
        choices=LOG_FORMATS,
    )
    access_log: bool = _setting(True, "SESSIONGATE_ACCESS_LOG", "one log line per RPC")
    near_cache: bool = _setting(True, "SESSIONGATE_NEAR_CACHE", "serve account state from memory")
    near_cache_ttl: float = _setting(
        2.0, "SESSIONGATE_NEAR_CACHE_TTL", "seconds a cached account stays fresh without news"
    )
    near_cache_entries: int = _setting(
        200_000, "SESSIONGATE_NEAR_CACHE_ENTRIES", "accounts the near-cache holds at most"
    )
    near_cache_unknown: int = _setting(
        10_000, "SESSIONGATE_NEAR_CACHE_UNKNOWN",
        "ids naming no account that the near-cache remembers at most (apart from the accounts:"
        " a flood of unknown ids evicts only these)",
    )
    failure_mode: FailureMode = _setting(
        "closed", "SESSIONGATE_FAILURE_MODE",
        "when Redis is unreachable: closed (deny), open (allow), static (last known state)",
        choices=FAILURE_MODES,
    )
    login_redis_timeout: float = _setting(
        0.25, "SESSIONGATE_LOGIN_REDIS_TIMEOUT",
        "seconds a login check waits for a Redis read (account state, a feature's counter)"
        " before the failure mode answers; keep it well below the clients' deadlines",
    )
    static_max_age: float = _setting(
        300.0, "SESSIONGATE_STATIC_MAX_AGE", "failure mode static: oldest usable state, seconds"
    )
    session_ttl: float = _setting(
        300.0, "SESSIONGATE_SESSION_TTL", "seconds a session lives without a heartbeat"
    )
    drain_timeout: float = _setting(
        10.0, "SESSIONGATE_DRAIN_TIMEOUT", "seconds in-flight calls get to finish on SIGTERM"
    )
    drain_delay: float = _setting(
        0.0, "SESSIONGATE_DRAIN_DELAY",
        "seconds to keep serving after health turns NOT_SERVING on SIGTERM, so that probes and"
        " balancers route away before new calls are refused (Kubernetes: a few seconds)",
    )
    metrics_addr: str = _setting(
        "127.0.0.1:9464", "SESSIONGATE_METRICS_ADDR", "Prometheus metrics address; empty: off"
    )
    scheduler: bool = _setting(
        True, "SESSIONGATE_SCHEDULER", "run the dunning scheduler and payment consumer"
    )
    sweep_interval: float = _setting(
        1.0, "SESSIONGATE_SWEEP_INTERVAL", "seconds between sweeps of accounts due for evaluation"
    )
    consumer_name: str = _setting(
        "", "SESSIONGATE_CONSUMER_NAME", "payment-stream consumer name (default: host-pid)"
    )
    payment_claim_idle: float = _setting(
        30.0, "SESSIONGATE_PAYMENT_CLAIM_IDLE",
        "seconds a payment entry stays pending before another replica reclaims it (a crash)",
    )
    webhook_url: str = _setting("", "SESSIONGATE_WEBHOOK_URL", "notification webhook URL")
    webhook_secret: str = _setting(
        "", "SESSIONGATE_WEBHOOK_SECRET", "HMAC-SHA256 key of the webhook signature header"
    )
    smtp_url: str = _setting(
        "", "SESSIONGATE_SMTP_URL", "SMTP server for admin emails, smtp://[user:pass@]host:port"
    )
    smtp_from: str = _setting(
        "sessiongate@localhost", "SESSIONGATE_SMTP_FROM", "sender address of emails"
    )
    notify_retry_base: float = _setting(
        1.0, "SESSIONGATE_NOTIFY_RETRY_BASE",
        "seconds before a failed notification is retried; doubles per attempt",
    )
    notify_retry_max: float = _setting(
        60.0, "SESSIONGATE_NOTIFY_RETRY_MAX", "longest wait between notification retries, seconds"
    )
    notify_claim_idle: float = _setting(
        300.0, "SESSIONGATE_NOTIFY_CLAIM_IDLE",
        "seconds a notification stays pending at a silent replica before another takes it over",
    )
    notify_timeout: float = _setting(
        10.0, "SESSIONGATE_NOTIFY_TIMEOUT", "seconds one webhook call or SMTP session may take"
    )
    reports: bool = _setting(
        True, "SESSIONGATE_REPORTS",
        "send the monthly reports (06:00 on the 1st in each account's time zone) and the"
        " daily digest; needs SESSIONGATE_SCHEDULER",
    )
    digest_emails: str = _setting(
        "", "SESSIONGATE_DIGEST_EMAILS",
        "comma-separated addresses of the vendor's daily advisory digest; empty: no digest",
    )
    digest_at: str = _setting(
        "07:00", "SESSIONGATE_DIGEST_AT", "local time HH:MM the daily digest is sent"
    )
    digest_time_zone: str = _setting(
        "UTC", "SESSIONGATE_DIGEST_TIME_ZONE", "IANA time zone of SESSIONGATE_DIGEST_AT"
    )
    templates_dir: str = _setting(
        "", "SESSIONGATE_TEMPLATES_DIR",
        "directory of Jinja2 templates overriding the shipped ones by name (email branding)",
    )
    link_secret: str = _setting(
        "", "SESSIONGATE_LINK_SECRET",
        "key signing the standing-page links; empty: no links, the page serves nothing",
        secret=True,
    )
    public_url: str = _setting(
        "http://127.0.0.1:9465", "SESSIONGATE_PUBLIC_URL",
        "base URL customers reach the HTTP server at (standing-page links)",
    )
    link_ttl_days: float = _setting(
        30.0, "SESSIONGATE_LINK_TTL_DAYS", "days a standing-page link stays valid"
    )
    pay_url_template: str = _setting(
        "", "SESSIONGATE_PAY_URL_TEMPLATE",
        "the standing page's Pay now link, {account_id} replaced (URL-quoted);"
        " e.g. https://billing.example.com/pay?account={account_id}",
    )
    app_tokens: str = _setting(
        "", "SESSIONGATE_APP_TOKENS", "comma-separated bearer tokens of the app role", secret=True
    )
    billing_tokens: str = _setting(
        "", "SESSIONGATE_BILLING_TOKENS", "bearer tokens of the billing role", secret=True
    )
    admin_tokens: str = _setting(
        "", "SESSIONGATE_ADMIN_TOKENS", "bearer tokens of the admin role", secret=True
    )
    tls_cert: str = _setting("", "SESSIONGATE_TLS_CERT", "server certificate (PEM) for gRPC TLS")
    tls_key: str = _setting("", "SESSIONGATE_TLS_KEY", "server private key (PEM)")
    tls_client_ca: str = _setting(
        "", "SESSIONGATE_TLS_CLIENT_CA", "CA bundle (PEM): require client certificates (mTLS)"
    )
    token: str = _setting(
        "", "SESSIONGATE_TOKEN", "bearer token that the CLI's client commands send", secret=True
    )
    workers: int = _setting(1, "SESSIONGATE_WORKERS", "server processes sharing the port")
    worker_index: int = _setting(
        0, "SESSIONGATE_WORKER_INDEX",
        "this process's number among the workers, 0..workers-1 (set by --workers for each):"
        " the dunning sweep's share of the buckets",
    )
    envoy_account_header: str = _setting(
        "x-account-id", "SESSIONGATE_ACCOUNT_HEADER",
        "proxies: request header naming the account; empty: none (see docs/envoy.md)",
        aliases=("SESSIONGATE_ENVOY_ACCOUNT_HEADER",),
    )
    envoy_user_header: str = _setting(
        "x-user-id", "SESSIONGATE_USER_HEADER",
        "proxies: request header naming the user; empty: none",
        aliases=("SESSIONGATE_ENVOY_USER_HEADER",),
    )
    envoy_feature_pattern: str = _setting(
        r"^/features/(?P<feature>[^/]+)", "SESSIONGATE_FEATURE_PATTERN",
        "proxies: regex on the request path whose group `feature` (or first group)"
        " names the feature; empty: none",
        aliases=("SESSIONGATE_ENVOY_FEATURE_PATTERN",),
    )
    http_addr: str = _setting(
        "127.0.0.1:9465", "SESSIONGATE_HTTP_ADDR",
        "HTTP forward-auth endpoint (/authz) for nginx, Traefik and Caddy; empty: off",
    )
    authz_open_paths: str = _setting(
        "", "SESSIONGATE_AUTHZ_OPEN_PATHS",
        "proxies: comma-separated path prefixes (e.g. /billing,/export) that stay open to a"
        " rostered user of an account restricted for non-payment",
    )
    jwt_secret: str = _setting(
        "", "SESSIONGATE_JWT_SECRET",
        "/authz: HS256 secret that verifies a JWT naming the account and user", secret=True,
    )
    jwt_jwks_file: str = _setting(
        "", "SESSIONGATE_JWT_JWKS_FILE",
        "/authz: JWKS file (JSON) whose public keys verify a JWT (RS*, ES*, PS*, EdDSA)",
    )
    jwt_cookie: str = _setting(
        "", "SESSIONGATE_JWT_COOKIE",
        "/authz: cookie carrying the JWT when there is no Authorization: Bearer header",
    )
    jwt_audience: str = _setting(
        "", "SESSIONGATE_JWT_AUDIENCE", "/authz: required JWT audience (aud); empty: not checked"
    )
    jwt_issuer: str = _setting(
        "", "SESSIONGATE_JWT_ISSUER", "/authz: required JWT issuer (iss); empty: not checked"
    )
    envoy_jwt_metadata_key: str = _setting(
        "", "SESSIONGATE_ENVOY_JWT_METADATA_KEY",
        "Envoy ext_authz: jwt_authn payload_in_metadata key to read claims from; empty: off",
    )
    envoy_jwt_payload_header: str = _setting(
        "", "SESSIONGATE_ENVOY_JWT_PAYLOAD_HEADER",
        "Envoy ext_authz: header with the verified JWT payload (base64url JSON); empty: off",
    )
    envoy_account_claim: str = _setting(
        "account_id", "SESSIONGATE_ACCOUNT_CLAIM",
        "proxies: JWT claim (dotted path) naming the account; empty: use the header",
        aliases=("SESSIONGATE_ENVOY_ACCOUNT_CLAIM",),
    )
    envoy_user_claim: str = _setting(
        "sub", "SESSIONGATE_USER_CLAIM",
        "proxies: JWT claim (dotted path) naming the user; empty: use the header",
        aliases=("SESSIONGATE_ENVOY_USER_CLAIM",),
    )
    envoy_payment_url: str = _setting(
        "", "SESSIONGATE_PAYMENT_URL",
        "proxies: where a suspended account pays, quoted in the HTTP 402 body",
        aliases=("SESSIONGATE_ENVOY_PAYMENT_URL",),
    )

    def __post_init__(self) -> None:
        # Resolved once, here: the embedded redis-server changes into this directory
        # (`--dir`), so a relative path handed on would be read relative to itself.
        object.__setattr__(self, "data_dir", str(pathlib.Path(self.data_dir).absolute()))
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise InvalidArgument(f.metadata["env"], f"must be one of {', '.join(choices)}")
        # Given as text (environment, flags, overrides), kept as the enum.
        object.__setattr__(self, "failure_mode", FailureMode(self.failure_mode))
        for name in ("near_cache_ttl", "login_redis_timeout", "static_max_age", "session_ttl",
                     "sweep_interval", "payment_claim_idle",
                     "notify_retry_base", "notify_retry_max", "notify_claim_idle",
                     "notify_timeout", "link_ttl_days"):
            if getattr(self, name) <= 0:
                raise InvalidArgument(name, "must be positive")
        for name in ("near_cache_entries", "near_cache_unknown"):
            if getattr(self, name) < 1:
                raise InvalidArgument(name, "must be at least 1")
        if self.workers < 1:
            raise InvalidArgument("workers", "must be at least 1")
        if not 0 <= self.worker_index < self.workers:
            raise InvalidArgument("worker_index", f"must be 0..{self.workers - 1} (workers - 1)")
        check_time_zone("SESSIONGATE_DIGEST_TIME_ZONE", self.digest_time_zone)
        self.digest_time()
        if self.digest_emails:
            check_emails("SESSIONGATE_DIGEST_EMAILS", self.digest_recipients())
        if bool(self.tls_cert) != bool(self.tls_key):
            raise InvalidArgument("SESSIONGATE_TLS_KEY", "TLS needs both a certificate and a key")
        if self.tls_client_ca and not self.tls_cert:
            raise InvalidArgument("SESSIONGATE_TLS_CLIENT_CA", "mTLS needs TLS_CERT and TLS_KEY")

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> Settings:
        """Environment first (with `<VAR>_FILE` for secrets mounted as files), then overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            var = f.metadata["env"]
            raw = env.get(var)
            if raw is None and f"{var}_FILE" in env:
                raw = pathlib.Path(env[f"{var}_FILE"]).read_text().strip()
            for old in f.metadata.get("aliases", ()):  # the names of earlier releases
                if raw is None:
                    raw = env.get(old)
            if raw is not None:
                values[f.name] = parse_value(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def digest_time(self) -> time:
        try:
            return time.fromisoformat(self.digest_at)
        except ValueError:
            raise InvalidArgument("SESSIONGATE_DIGEST_AT", "must be a time HH:MM") from None

    def digest_recipients(self) -> tuple[str, ...]:
        return tuple(a.strip() for a in self.digest_emails.split(",") if a.strip())

    def tokens(self, role: str) -> tuple[str, ...]:
        raw = {"app": self.app_tokens, "billing": self.billing_tokens, "admin": self.admin_tokens}
        return tuple(t.strip() for t in raw[role].split(",") if t.strip())


def parse_value(f: dataclasses.Field[Any], raw: str) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "str")
    try:
        if kind == "bool":
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise InvalidArgument(f.metadata["env"], f"cannot parse {raw!r} as {kind}") from None
    return raw
