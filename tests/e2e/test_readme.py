"""The README, run as a newcomer runs it: a fresh `git clone` of the checkout under test,
`make run` with no SESSIONGATE_* setting but free ports, every command block of the README
against that server, Ctrl-C, and `make run` again.

The clone is of the committed HEAD: uncommitted changes are not in it, as they would not be in
a newcomer's clone. Its `.venv` is made by `make run` itself (~30 s).
"""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sessiongate.store.embedded import free_port, redis_server_binary
from tests.readme_blocks import KNOWN_LANGUAGES, Block, Command, blocks, shows

pytestmark = pytest.mark.timeout(600)

# Commands that only read: retried until their output shows (the payment stream is consumed
# asynchronously). Anything that writes runs exactly once.
READS = (("account", "get"), ("check",), ("account", "preview"), ("account", "history"))


class MakeRun:
    """`make run` in its own session, as a shell starts it; output to a pty or a pipe."""

    def __init__(self, clone: Path, env: dict[str, str], tty: bool) -> None:
        self.output = bytearray()
        if tty:
            master, slave = pty.openpty()
            self.proc = subprocess.Popen(["make", "run"], cwd=clone, env=env,
                                         stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                                         start_new_session=True)
            os.close(slave)
            self._fd = master
        else:
            self.proc = subprocess.Popen(["make", "run"], cwd=clone, env=env,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, start_new_session=True)
            assert self.proc.stdout is not None
            self._fd = self.proc.stdout.fileno()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except OSError:  # the pty's EIO once every writer is gone
                return
            if not chunk:
                return
            self.output += chunk

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace").replace("\r\n", "\n")

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to the foreground process group (make and what it started)."""
        os.killpg(self.proc.pid, signal.SIGINT)
        code = self.proc.wait(60)
        self._reader.join(10)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def processes_in(directory: Path) -> list[str]:
    """Processes whose working directory or command line lies in `directory` (redis-server
    changes into its data directory; sessiongate runs in the clone)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if cwd.startswith(str(directory)) or str(directory) in cmdline:
            found.append(f"{proc.name}: {cmdline.strip()} (cwd {cwd})")
    return found


def run(cmd: Command, clone: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", cmd.text], cwd=clone, env=env, capture_output=True,
                          text=True, timeout=60)


def check(cmd: Command, clone: Path, env: dict[str, str]) -> None:
    """Run one README command; its shown output must appear. Reads are retried for a while
    (asynchronous effects), writes run once."""
    reads = any(cmd.words[1:1 + len(r)] == list(r) for r in READS)
    deadline = time.monotonic() + (15 if reads else 0)
    while True:
        got = run(cmd, clone, env)
        printed = got.stdout + got.stderr
        ok = shows(cmd.output, printed) if cmd.output else got.returncode == 0
        if ok or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert ok, (f"README line {cmd.line}: `{cmd.text}` exited {got.returncode} and printed:\n"
                f"{printed}\nthe README shows:\n" + "\n".join(cmd.output))


def wait_serving(clone: Path, env: dict[str, str], make: MakeRun, timeout: float) -> None:
    cli = clone / ".venv" / "bin" / "sessiongate"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert make.proc.poll() is None, f"make run exited {make.proc.returncode}:\n{make.text}"
        if (clone / ".venv" / ".installed").exists():
            probe = subprocess.run([str(cli), "health", "--timeout", "2"], env=env,
                                   capture_output=True, text=True)
            if probe.returncode == 0 and "SERVING" in probe.stdout:
                return
        time.sleep(0.5)
    raise AssertionError(f"make run not SERVING after {timeout:.0f} s:\n{make.text}")


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = Path(__file__).resolve().parents[2]
    target = tmp_path_factory.mktemp("newcomer") / "sessiongate"
    subprocess.run(["git", "clone", "-q", str(root), str(target)], check=True)
    yield target
    leftovers = processes_in(target)
    for line in leftovers:
        os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)


def newcomer_env(clone: Path) -> dict[str, str]:
    """The caller's environment without any SESSIONGATE_* setting, but the documented port
    variables on free ports (a developer's own server may hold the defaults); redis-cli on
    PATH, as it is wherever Redis is installed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONGATE_")}
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = f"{Path(redis_server_binary()).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    env["SESSIONGATE_GRPC_ADDR"] = f"127.0.0.1:{free_port()}"
    env["SESSIONGATE_METRICS_ADDR"] = f"127.0.0.1:{free_port()}"
    env["SESSIONGATE_HTTP_ADDR"] = f"127.0.0.1:{free_port()}"
    return env


def assert_clean_exit(code: int, output: str) -> None:
    """sessiongate drained and stopped without an error. make itself, like any make, dies of
    the SIGINT it was sent once its recipe has ended (a shell shows 130), and says nothing;
    it prints `make: *** ... Error` only when sessiongate failed."""
    assert code in (0, -signal.SIGINT), f"make run exited {code}:\n{output[-2000:]}"
    assert "stopped" in output, output[-2000:]
    assert "Traceback" not in output and "make: ***" not in output, output[-2000:]


def console_blocks(readme: Path) -> list[Block]:
    found = blocks(readme)
    unlabelled = [b.line for b in found if b.language not in KNOWN_LANGUAGES]
    assert not unlabelled, f"README blocks at lines {unlabelled}: label them console or text"
    return [b for b in found if b.language == "console"]


def test_readme_as_a_newcomer(clone: Path) -> None:
    env = newcomer_env(clone)
    readme = console_blocks(clone / "README.md")
    ran: set[int] = set()

    # 1. `make run` at a terminal: creates .venv, starts the embedded Redis, greets a human.
    first = MakeRun(clone, env, tty=True)
    try:
        wait_serving(clone, env, first, timeout=300)
        make_lines = {c.line for b in readme for c in b.commands if c.words[:2] == ["make", "run"]}
        assert make_lines, "the README no longer says `make run`"
        ran |= make_lines
        addr = env["SESSIONGATE_GRPC_ADDR"]
        greeting = (f"sessiongate is serving on {addr}, data in {clone}/.sessiongate. Try:"
                    " .venv/bin/sessiongate account upsert acme --user alice &&"
                    " .venv/bin/sessiongate check acme alice")
        deadline = time.monotonic() + 10
        while greeting not in first.text and time.monotonic() < deadline:
            time.sleep(0.1)
        assert greeting in first.text, first.text
        assert "embedded redis started" in first.text
        assert '{"' not in first.text, "JSON log lines on a terminal"

        # 2. The README's "Try it" block, with the clone's CLI.
        try_it = [b for b in readme if b.heading == "Try it"]
        assert try_it and try_it[0].commands
        for cmd in try_it[0].commands:
            check(cmd, clone, env)
            ran.add(cmd.line)
    finally:
        # 3. Ctrl-C: a clean stop, nothing left running (the embedded redis-server included).
        code = first.interrupt() if first.proc.poll() is None else first.proc.returncode
    assert_clean_exit(code, first.text)
    assert processes_in(clone) == []

    # 4. `make run` again, not on a terminal (JSON logs, no greeting): the account persisted.
    second = MakeRun(clone, env, tty=False)
    try:
        wait_serving(clone, env, second, timeout=60)
        assert "sessiongate is serving on" not in second.text
        assert '"event": "sessiongate serving"' in second.text, second.text
        check(Command(0, ".venv/bin/sessiongate account get acme",
                      ["account acme (version 1)", "users alice, bob"]), clone, env)

        # 5. Every other command of the README, in order, against this server.
        for block in readme:
            for cmd in block.commands:
                if cmd.line in ran:
                    continue
                if cmd.words[:2] == ["make", "test"]:  # this suite: checked to exist only
                    assert subprocess.run(["make", "-n", "test"], cwd=clone,
                                          capture_output=True).returncode == 0
                else:
                    check(cmd, clone, env)
                ran.add(cmd.line)
    finally:
        code = second.interrupt() if second.proc.poll() is None else second.proc.returncode
    assert_clean_exit(code, second.text)
    assert processes_in(clone) == []
    every = {c.line for b in readme for c in b.commands}
    assert ran == every, f"README commands not run: {sorted(every - ran)}"


def children(pid: int) -> list[str]:
    """Child processes of any thread of `pid` (the embedded Redis starts from a worker thread)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += (task / "children").read_text().split()
        except OSError:
            continue
    return found


def test_ctrl_c_during_start_up_leaves_nothing(tmp_path: Path) -> None:
    """SIGINT while the embedded Redis starts: start-up finishes, drains, stops Redis, exit 0.
    A SIGKILLed sessiongate's orphaned redis-server is stopped by the next start."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONGATE_")}
    env.update(SESSIONGATE_GRPC_ADDR=f"127.0.0.1:{free_port()}", SESSIONGATE_METRICS_ADDR="",
               SESSIONGATE_HTTP_ADDR="", SESSIONGATE_DATA_DIR="data")
    cli = str(Path(sys.executable).parent / "sessiongate")
    proc = subprocess.Popen([cli, "serve"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not children(proc.pid):
        time.sleep(0.002)
    assert children(proc.pid), "redis-server never started"
    assert not (tmp_path / "data" / "redis.url").exists(), "Redis was already up: too late"
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out.decode()
    assert b'"event": "stopped"' in out
    assert processes_in(tmp_path) == []
    assert not (tmp_path / "data" / "redis.url").exists()

    # A SIGKILL leaves the redis-server (its own process group) behind; the next start stops it.
    proc = subprocess.Popen([cli, "serve"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (tmp_path / "data" / "redis.url").exists():
        time.sleep(0.05)
    time.sleep(0.5)
    proc.kill()
    proc.wait()
    orphans = processes_in(tmp_path)
    assert len(orphans) == 1 and "redis-server" in orphans[0], orphans
    (tmp_path / "data" / "redis.url").unlink()  # left by the killed process
    proc = subprocess.Popen([cli, "serve"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (tmp_path / "data" / "redis.url").exists():
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert b"left running by a killed sessiongate" in out, out.decode()
    assert proc.returncode == 0
    assert processes_in(tmp_path) == []
