"""Loaded by the `sessiongate serve` that `bench.probe` starts (this folder is its PYTHONPATH):
wraps the functions named in PROBE_TARGETS with a timer before anything imports them, and
writes their call counts and times to PROBE_OUT as JSON every half second.

PROBE_TARGETS: comma-separated `module:attribute` or `module:Class.method`. A wrapper costs
~0.3 us a call, included in the times it reports.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import os
import threading
import time
from typing import Any

_stats: dict[str, list[float]] = {}


def _wrap(target: str) -> None:
    module_name, _, path = target.partition(":")
    owner: Any = importlib.import_module(module_name)
    *parents, name = path.split(".")
    for part in parents:
        owner = getattr(owner, part)
    original = inspect.getattr_static(owner, name)
    if isinstance(original, staticmethod | classmethod):
        raise SystemExit(f"bench.probe: {target}: static and class methods are not probed")
    stat = _stats.setdefault(target, [0, 0.0])
    clock = time.perf_counter
    if inspect.iscoroutinefunction(original):
        @functools.wraps(original)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                return await original(*args, **kwargs)
            finally:
                stat[0] += 1
                stat[1] += clock() - start
        setattr(owner, name, timed_async)
        return

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = clock()
        try:
            return original(*args, **kwargs)
        finally:
            stat[0] += 1
            stat[1] += clock() - start
    setattr(owner, name, timed)


def _write(out: str) -> None:
    while True:
        time.sleep(0.5)
        snapshot = {k: [v[0], v[1]] for k, v in list(_stats.items())}
        with open(out + ".tmp", "w") as f:
            json.dump(snapshot, f)
        os.replace(out + ".tmp", out)


_targets = [t for t in os.environ.get("PROBE_TARGETS", "").split(",") if t]
if _targets and os.environ.get("PROBE_OUT"):
    for _target in _targets:
        _wrap(_target)
    threading.Thread(target=_write, args=(os.environ["PROBE_OUT"],), daemon=True).start()
