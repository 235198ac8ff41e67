"""Drive h2load with real gRPC frames, and read back what it measured.

A gRPC unary request over HTTP/2 is a POST with `content-type: application/grpc` and
`te: trailers` whose body is a 5-byte prefix (compressed flag, big-endian length) and the
serialized message. h2load sends the same body for every request (`-d FILE`) and writes one
line per request to `--log-file`: start time (us since epoch), HTTP status, duration (us).
With `--h1` it drives plain HTTP/1.1 (the forward-auth endpoint `/authz`) the same way.
h2load cannot see grpc-status (it lives in the trailers): `run.py` checks each scenario's
answer with a real gRPC client before loading it.
"""

from __future__ import annotations

import math
import re
import shutil
import struct
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.message import Message


def grpc_frame(message: Message | bytes) -> bytes:
    """The length-prefixed message of a gRPC body, uncompressed."""
    raw = message if isinstance(message, bytes) else message.SerializeToString()
    return struct.pack(">BI", 0, len(raw)) + raw


def write_request(path: Path, message: Message | bytes) -> Path:
    path.write_bytes(grpc_frame(message))
    return path


def ensure_tool(binary: str, package: str) -> str:
    """`binary`'s path; installs the Debian `package` when missing (needs root and apt)."""
    found = shutil.which(binary)
    if found:
        return found
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, env=env)
    found = shutil.which(binary)
    if not found:
        raise RuntimeError(f"{binary} not found after installing {package}")
    return found


def ensure_h2load() -> str:
    """h2load's path; installs Debian's nghttp2-client when missing."""
    return ensure_tool("h2load", "nghttp2-client")


@dataclass(frozen=True)
class Load:
    """One h2load run: closed loop (`rate` 0: as fast as possible) or a fixed total rate."""

    clients: int = 8
    streams: int = 8
    duration: float = 10.0
    warmup: float = 2.0
    rate: int = 0  # total requests/s; h2load's --rps is per client

    def per_client_rps(self) -> int:
        return max(1, math.ceil(self.rate / self.clients)) if self.rate else 0


def command(h2load: str, url: str, body: Path | None, load: Load, log_file: Path,
            headers: Sequence[tuple[str, str]] = (), h1: bool = False) -> list[str]:
    """The h2load command line: gRPC frames over HTTP/2 (a POST of `body`), or with `h1` plain
    HTTP/1.1 requests (a GET, or a POST of `body` if given) over `clients x streams`
    connections of one request at a time (no pipelining, as proxies send them)."""
    if h1:
        cmd = [h2load, url, "--h1", "-c", str(load.clients * load.streams), "-m", "1"]
        if body is not None:
            cmd += ["-d", str(body)]
    else:
        assert body is not None, "a gRPC request needs its body"
        cmd = [h2load, url, "-d", str(body), "-H", "content-type: application/grpc",
               "-H", "te: trailers", "-c", str(load.clients), "-m", str(load.streams)]
    cmd += ["-t", "1", "-D", f"{load.duration:g}", "--warm-up-time", f"{load.warmup:g}",
            "--log-file", str(log_file)]
    for name, value in headers:
        cmd += ["-H", f"{name}: {value}"]
    if load.rate:
        cmd += ["--rps", str(load.per_client_rps())]
    return cmd


def parse_log(text: str) -> tuple[list[int], int]:
    """(durations in microseconds of the HTTP 200 responses, count of other statuses)."""
    durations: list[int] = []
    bad = 0
    for line in text.splitlines():
        cols = line.split("\t")
        if len(cols) < 3:
            continue
        if cols[1].strip() == "200":
            durations.append(int(cols[2]))
        else:
            bad += 1
    return durations, bad


_SUMMARY = re.compile(
    r"requests: (?P<total>\d+) total, (?P<started>\d+) started, (?P<done>\d+) done, "
    r"(?P<succeeded>\d+) succeeded, (?P<failed>\d+) failed, (?P<errored>\d+) errored"
)
_FINISHED = re.compile(r"finished in (?P<secs>[\d.]+)(?P<unit>m?s), (?P<rps>[\d.]+) req/s")


def parse_summary(stdout: str) -> dict[str, float]:
    """Counts and throughput from h2load's report."""
    out: dict[str, float] = {}
    m = _SUMMARY.search(stdout)
    if m:
        out.update({k: float(v) for k, v in m.groupdict().items()})
    f = _FINISHED.search(stdout)
    if f:
        secs = float(f["secs"]) / (1000.0 if f["unit"] == "ms" else 1.0)
        out.update(seconds=secs, rps=float(f["rps"]))
    return out


def percentile(sorted_values: Sequence[int], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values) / 100.0 - 1e-9))  # 99.9 % of 1000: 999
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


@dataclass
class Result:
    rps: float
    requests: int
    failed: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    p999_ms: float = math.nan
    load: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(stdout: str, log_text: str, load: Load) -> Result:
    durations, bad = parse_log(log_text)
    durations.sort()
    summary = parse_summary(stdout)
    return Result(
        rps=summary.get("rps", 0.0),
        requests=len(durations),
        failed=bad + int(summary.get("failed", 0) + summary.get("errored", 0)),
        p50_ms=percentile(durations, 50) / 1000.0,
        p99_ms=percentile(durations, 99) / 1000.0,
        max_ms=(durations[-1] / 1000.0) if durations else math.nan,
        p999_ms=percentile(durations, 99.9) / 1000.0,
        load=asdict(load),
    )


def run(h2load: str, url: str, body: Path | None, load: Load, workdir: Path,
        headers: Sequence[tuple[str, str]] = (), h1: bool = False,
        prefix: Sequence[str] = ()) -> Result:
    """One h2load run; `prefix`: a command to run it under (e.g. `taskset -c 1`)."""
    log_file = workdir / "h2load.log"
    log_file.unlink(missing_ok=True)
    proc = subprocess.run([*prefix, *command(h2load, url, body, load, log_file, headers, h1)],
                          capture_output=True, text=True, timeout=load.duration * 4 + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"h2load failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    text = log_file.read_text() if log_file.exists() else ""
    return summarize(proc.stdout, text, load)
