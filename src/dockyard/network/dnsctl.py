"""The store's embedded DNS server process: start it, point it at a network, stop it.

One server serves every user-defined network of a store (see ``dns.py``); SIGHUP
makes it re-read the store, and these functions wait until it listens, or no
longer listens, where the caller needs.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from dockyard.network.kernel import NetworkError
from dockyard.procs import pid_alive, reap, wait_gone


def _pid_of(pidfile: Path, db: Path) -> int | None:
    """The server's PID if it is alive and really ours (its command line names the store)."""
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    if b"dockyard.network.dns" in cmdline and os.fsencode(db) in cmdline and pid_alive(pid):
        return pid
    return None


def running(pidfile: Path, db: Path) -> bool:
    return _pid_of(pidfile, db) is not None


def listening(address: str) -> bool:
    """Whether something accepts TCP connections on ``address``:53."""
    import socket

    try:
        with socket.create_connection((address, 53), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def serve(*, pidfile: Path, db: Path, address: str, resolv: str, log: Path) -> None:
    """Make the store's server listen on ``address`` (starting it if none runs)."""
    pid = _pid_of(pidfile, db)
    if pid is not None:
        try:
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            pass
        _wait_for(lambda: listening(address) or not pid_alive(pid), 5)
        if listening(address):
            return
        if pid_alive(pid):
            raise NetworkError(f"the embedded DNS server does not answer on {address}:53")
        reap(pid)  # it was exiting (its last network had just gone): start a new one
    _start(pidfile=pidfile, db=db, address=address, resolv=resolv, log=log)


def release(pidfile: Path, db: Path, address: str) -> None:
    """Tell the server to re-read the store, once ``address``'s network has no running
    container; returns when it no longer listens there (or has exited)."""
    pid = _pid_of(pidfile, db)
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return
    _wait_for(lambda: not pid_alive(pid) or not listening(address), 3)
    reap(pid)


def _start(*, pidfile: Path, db: Path, address: str, resolv: str, log: Path) -> None:
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "dockyard.network.dns",
        "--db",
        str(db),
        "--address",
        address,
        "--resolv",
        resolv,
        "--pidfile",
        str(pidfile),
    ]
    # the package's own location first: the server must import this very dockyard
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    import select
    import subprocess

    with open(log, "ab") as errors:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
            start_new_session=True,
            close_fds=True,
            cwd="/",
            env=env,
        )
    assert proc.stdout is not None
    line = b""
    ready, _, _ = select.select([proc.stdout], [], [], 15)
    if ready:
        line = proc.stdout.readline()
    proc.stdout.close()
    if line.strip() != b"ready":
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        try:
            detail = (
                line.decode(errors="replace").strip() or log.read_text().strip().splitlines()[-1]
            )
        except (OSError, IndexError):
            detail = f"see {log}"
        raise NetworkError(
            f"the embedded DNS server of the network did not start on {address}:53: {detail}"
        )
    proc.returncode = 0  # detached on purpose: no ResourceWarning when this object dies


def stop(pidfile: Path, db: Path) -> None:
    """Stop the server if it runs; quiet when it does not."""
    pid = _pid_of(pidfile, db)
    if pid is not None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        if not wait_gone(pid, 3):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    pidfile.unlink(missing_ok=True)
