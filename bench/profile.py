"""Where a request spends its time: py-spy on `sessiongate serve` under load (near-cache check).

    python -m bench.profile [--seconds 15] [--gil] [--native] [--rate 1500] [--floor]
                            [--scenario seat_login]

Loads the server with h2load (8 connections x 8 streams, or `--rate` requests/s) while py-spy
samples it, then prints the functions with the most samples, self and inclusive, from the
collapsed stacks. `--floor` profiles the floor server instead, to compare the two side by
side; `--native` adds the C frames (grpc's core, the interpreter), which `--gil` alone hides.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bench import h2load, procs
from bench.scenarios import SCENARIOS
from sessiongate.store.embedded import EmbeddedRedis


def top(collapsed: str, n: int = 25) -> str:
    """Self and inclusive sample shares per function, from py-spy's raw (collapsed) output."""
    self_: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        c = int(count)
        total += c
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1]
                  + ")" if " (" in f else f for f in stack.split(";")]
        self_[frames[-1]] += c
        for f in set(frames):
            incl[f] += c
    lines = [f"{total} samples", "", "self %  function"]
    lines += [f"{100 * c / total:5.1f}  {f}" for f, c in self_.most_common(n)]
    lines += ["", "incl %  function"]
    lines += [f"{100 * c / total:5.1f}  {f}" for f, c in incl.most_common(n)]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--gil", action="store_true", help="only samples holding the GIL")
    p.add_argument("--native", action="store_true", help="include C frames (py-spy --native)")
    p.add_argument("--rate", type=int, default=0, help="fixed total requests/s (0: saturated)")
    p.add_argument("--floor", action="store_true", help="profile the floor server instead")
    p.add_argument("--scenario", default="login", help="the request: a scenario's name")
    p.add_argument("--out", default="", help="also write the collapsed stacks here")
    args = p.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    h2 = h2load.ensure_h2load()
    with tempfile.TemporaryDirectory(prefix="sg-prof-") as tmp:
        work = Path(tmp)
        redis = EmbeddedRedis(work / "redis", persistent=False)
        redis.start()
        scenario = next(s for s in SCENARIOS if s.name == args.scenario)
        srv = (procs.floor(work, http=scenario.http) if args.floor else
               procs.serve(redis.url, work, name="profiled", http=scenario.http,
                           **scenario.settings))
        try:
            if not args.floor:
                scenario.verify(srv)
            body = scenario.body(work)
            shape = {"clients": 10, "streams": 1, "rate": args.rate} if args.rate else {}
            load = h2load.Load(duration=args.seconds + 4, warmup=1.0, **shape)
            loader = threading.Thread(
                target=h2load.run, args=(h2, scenario.url(srv), body, load, work,
                                         scenario.headers(), scenario.http), daemon=True)
            loader.start()
            raw = work / "stacks.txt"
            cmd = [spy, "record", "--pid", str(srv.pid), "--duration", f"{args.seconds:g}",
                   "--rate", "250", "--format", "raw", "--output", str(raw)]
            if args.gil:
                cmd.append("--gil")
            if args.native:
                cmd.append("--native")
            subprocess.run(cmd, check=True, capture_output=True)
            loader.join()
            text = raw.read_text()
            if args.out:
                Path(args.out).write_text(text)
            print(top(text))
        finally:
            srv.stop()
            redis.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
