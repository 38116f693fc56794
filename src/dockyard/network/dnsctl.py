"""Starting and stopping a network's embedded DNS server process."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from dockyard.network.kernel import NetworkError


def _pid_of(pidfile: Path, network_id: str) -> int | None:
    """The server's PID if it is alive and really ours (its command line names the network)."""
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    if b"dockyard.network.dns" in cmdline and network_id.encode() in cmdline:
        return pid
    return None


def _alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie (which init may be slow to reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def running(pidfile: Path, network_id: str) -> bool:
    return _pid_of(pidfile, network_id) is not None


def start(
    *, pidfile: Path, db: Path, network_id: str, address: str, resolv: str, log: Path
) -> None:
    """Start the server unless it runs; returns once it listens."""
    if running(pidfile, network_id):
        return
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "dockyard.network.dns",
        "--db",
        str(db),
        "--network",
        network_id,
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


def stop(pidfile: Path, network_id: str) -> None:
    """Stop the server if it runs; quiet when it does not."""
    pid = _pid_of(pidfile, network_id)
    if pid is not None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and _alive(pid):
            try:
                # reap it when we are its parent (started in this process)
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    break
            except ChildProcessError:
                pass
            time.sleep(0.01)
        else:
            if _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    pidfile.unlink(missing_ok=True)
