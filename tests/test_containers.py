"""Container lifecycle through the CLI, on real runc."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from conftest import Runner


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def test_run_prints_output_and_exit_code(dy: Runner, busybox_image: str) -> None:
    proc = dy("run", "--rm", busybox_image, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert proc.returncode == 3
    assert proc.stdout == "out\n"
    assert proc.stderr == "err\n"
    assert dy("ps", "-aq").stdout == ""


def test_run_command_flags_stay_the_commands(dy: Runner, busybox_image: str) -> None:
    proc = dy("run", "--rm", busybox_image, "ls", "-d", "/")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "/"


def test_exit_codes_like_docker(dy: Runner, busybox_image: str) -> None:
    missing = dy("run", "--rm", busybox_image, "/no/such/command")
    assert missing.returncode == 127, missing.stderr
    assert missing.stderr.count("\n") == 1
    notexec = dy("run", "--rm", busybox_image, "/etc/passwd")
    assert notexec.returncode == 126, notexec.stderr
    noimage = dy("run", "--rm", "no-such-image:1", "true")
    assert noimage.returncode == 125
    badflag = dy("run", "--bogus-flag", busybox_image)
    assert badflag.returncode == 125
    assert dy("ps", "-aq").stdout == ""


def test_detached_container_outlives_the_command(dy: Runner, busybox_image: str) -> None:
    cid = dy(
        "run", "-d", "--name", "sleeper", busybox_image, "sleep", "300", check=True
    ).stdout.strip()
    assert len(cid) == 64
    ps = dy("ps", check=True).stdout.splitlines()
    assert ps[0].split()[:3] == ["CONTAINER", "ID", "IMAGE"]
    assert "sleeper" in ps[1] and "Up " in ps[1]
    assert (
        dy("inspect", "-f", "{{.State.Running}} {{.Name}}", cid[:6], check=True).stdout
        == "true /sleeper\n"
    )
    dy("stop", "-t", "1", "sleeper", check=True)
    status = dy(
        "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "sleeper", check=True
    ).stdout
    assert status == "exited 137\n" or status == "exited 143\n"
    dy("rm", "sleeper", check=True)
    assert dy("ps", "-aq").stdout == ""


def test_exit_on_its_own_is_recorded(dy: Runner, busybox_image: str) -> None:
    cid = dy("run", "-d", busybox_image, "sh", "-c", "exit 7", check=True).stdout.strip()
    assert wait_for(lambda: "Exited (7)" in dy("ps", "-a").stdout)
    assert dy("wait", cid).stdout.strip() == "7"
    assert dy("inspect", "-f", "{{.State.ExitCode}}", cid).stdout.strip() == "7"


def test_logs_keep_streams_apart(dy: Runner, busybox_image: str) -> None:
    cid = dy(
        "run", "-d", busybox_image, "sh", "-c", "echo one; echo two >&2; echo three", check=True
    ).stdout.strip()
    dy("wait", cid, check=True)
    logs = dy("logs", cid, check=True)
    assert logs.stdout == "one\nthree\n"
    assert logs.stderr == "two\n"
    last = dy("logs", "--tail", "1", cid)
    assert last.stdout + last.stderr in ("three\n", "two\n")  # streams interleave freely
    stamped = dy("logs", "-t", cid).stdout.splitlines()[0]
    assert stamped.endswith(" one") and stamped[:4].isdigit()


def test_name_conflict_and_prefix_resolution(dy: Runner, busybox_image: str) -> None:
    dy("create", "--name", "web", busybox_image, "true", check=True)
    again = dy("create", "--name", "web", busybox_image, "true")
    assert again.returncode == 125
    assert "already in use" in again.stderr
    assert dy("ps", "-aq").stdout.count("\n") == 1
    missing = dy("rm", "nope")
    assert missing.returncode == 1 and "No such container: nope" in missing.stderr


def test_env_workdir_user_entrypoint(dy: Runner, busybox_image: str) -> None:
    out = dy(
        "run",
        "--rm",
        "-e",
        "A=1",
        "-w",
        "/tmp",
        "-u",
        "app",
        busybox_image,
        "sh",
        "-c",
        "echo $A $(pwd) $(id -u) $HOME",
        check=True,
    ).stdout
    assert out == "1 /tmp 1000 /home/app\n"
    out = dy("run", "--rm", "--entrypoint", "echo", busybox_image, "hello", check=True).stdout
    assert out == "hello\n"


def test_stdin_interactive(dy: Runner, busybox_image: str) -> None:
    proc = dy("run", "--rm", "-i", busybox_image, "cat", input="piped\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "piped\n"


def test_exec_and_top(dy: Runner, busybox_image: str) -> None:
    cid = dy("run", "-d", busybox_image, "sleep", "300", check=True).stdout.strip()
    out = dy("exec", "-e", "X=y", cid, "sh", "-c", "echo $X; hostname", check=True).stdout
    assert out == f"y\n{cid[:12]}\n"
    assert dy("exec", cid, "sh", "-c", "exit 4").returncode == 4
    assert dy("exec", cid, "/nonexistent").returncode == 126
    top = dy("top", cid, check=True).stdout
    assert "sleep 300" in top
    dy("rm", "-f", cid, check=True)


def test_pause_unpause_and_kill(dy: Runner, busybox_image: str) -> None:
    cid = dy("run", "-d", busybox_image, "sleep", "300", check=True).stdout.strip()
    dy("pause", cid, check=True)
    assert "(Paused)" in dy("ps").stdout
    assert dy("inspect", "-f", "{{.State.Status}}", cid).stdout.strip() == "paused"
    dy("unpause", cid, check=True)
    dy("kill", cid, check=True)
    assert wait_for(lambda: "Exited (137)" in dy("ps", "-a").stdout)


def test_restart_policy_on_failure(dy: Runner, busybox_image: str) -> None:
    cid = dy(
        "run", "-d", "--restart", "on-failure:2", busybox_image, "sh", "-c", "exit 1", check=True
    ).stdout.strip()
    assert wait_for(
        lambda: (
            dy("inspect", "-f", "{{.State.Status}} {{.RestartCount}}", cid).stdout.strip()
            == "exited 2"
        ),
        timeout=20,
    )


def test_healthcheck_states(dy: Runner, busybox_image: str) -> None:
    cid = dy(
        "run",
        "-d",
        "--health-cmd",
        "test -e /tmp/ok",
        "--health-interval",
        "200ms",
        "--health-retries",
        "1",
        busybox_image,
        "sleep",
        "300",
        check=True,
    ).stdout.strip()
    assert wait_for(lambda: "(unhealthy)" in dy("ps").stdout, timeout=15)
    dy("exec", cid, "touch", "/tmp/ok", check=True)
    assert wait_for(lambda: "(healthy)" in dy("ps").stdout, timeout=15)
    health = json.loads(dy("inspect", "-f", "{{json .State.Health}}", cid).stdout)
    assert health["Status"] == "healthy"
    dy("rm", "-f", cid, check=True)


def test_rm_refuses_running_and_force_works(dy: Runner, busybox_image: str) -> None:
    cid = dy("run", "-d", busybox_image, "sleep", "300", check=True).stdout.strip()
    refused = dy("rm", cid)
    assert refused.returncode == 1 and "stop the container" in refused.stderr
    dy("rm", "-f", cid, check=True)
    assert dy("ps", "-aq").stdout == ""


def test_killed_monitors_are_not_shown_running(
    dy: Runner, busybox_image: str, dockyard_env: dict[str, str]
) -> None:
    """Simulate a machine restart: monitors and runtime state gone."""
    import shutil
    import subprocess

    cid = dy("run", "-d", busybox_image, "sleep", "300", check=True).stdout.strip()
    run_dir = Path(dockyard_env["DOCKYARD_RUNROOT"])
    monitor_pid = int((run_dir / "containers" / cid / "monitor.pid").read_text())
    os.kill(monitor_pid, 9)
    subprocess.run(
        ["runc", "--root", str(run_dir / "runc"), "kill", cid, "KILL"], capture_output=True
    )
    time.sleep(0.3)
    shutil.rmtree(run_dir / "runc", ignore_errors=True)
    shutil.rmtree(run_dir / "containers", ignore_errors=True)
    assert wait_for(lambda: "Exited" in dy("ps", "-a").stdout)
    assert dy("ps", "-q").stdout == ""
    dy("start", cid, check=True)
    assert dy("ps", "-q").stdout.strip() == cid[:12]
    dy("rm", "-f", cid, check=True)


def test_parallel_runs_keep_the_store_consistent(dy: Runner, busybox_image: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(
            pool.map(
                lambda i: dy("run", "-d", "--name", f"p{i}", busybox_image, "sleep", "300"),
                range(20),
            )
        )
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results if r.returncode]
    ids = dy("ps", "-q").stdout.split()
    assert len(ids) == 20
    with ThreadPoolExecutor(max_workers=20) as pool:
        removed = list(pool.map(lambda i: dy("rm", "-f", f"p{i}"), range(20)))
        list(pool.map(lambda i: dy("ps", "-a"), range(5)))
    assert all(r.returncode == 0 for r in removed), [r.stderr for r in removed if r.returncode]
    assert dy("ps", "-aq").stdout == ""


def test_security_defaults(dy: Runner, busybox_image: str) -> None:
    out = dy(
        "run",
        "--rm",
        busybox_image,
        "sh",
        "-c",
        "grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status; cat /proc/keys | wc -c",
        check=True,
    ).stdout
    assert "CapEff:\t00000000a80425fb" in out
    assert "Seccomp:\t2" in out
    assert out.strip().endswith("0")


def test_ps_format_and_filters(dy: Runner, busybox_image: str) -> None:
    dy("create", "--name", "a1", "-l", "tier=web", busybox_image, "true", check=True)
    dy("create", "--name", "b2", busybox_image, "true", check=True)
    out = dy("ps", "-a", "--filter", "label=tier=web", "--format", "{{.Names}} {{.State}}").stdout
    assert out == "a1 created\n"
    out = dy("ps", "-a", "--format", "table {{.Names}}").stdout.splitlines()
    assert out[0].strip() == "NAMES" and sorted(x.strip() for x in out[1:]) == ["a1", "b2"]
    assert dy("ps", "-a", "--format", "{{json .Names}}").stdout.splitlines()[0] == '"b2"'


def test_tty_is_a_real_pty_with_the_terminal_size(
    busybox_image: str, dockyard_env: dict[str, str]
) -> None:
    import fcntl
    import pty
    import struct
    import subprocess
    import sys
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dockyard",
            "run",
            "--rm",
            "-it",
            busybox_image,
            "sh",
            "-c",
            "tty; stty size; exit 5",
        ],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=dockyard_env,
        start_new_session=True,
    )
    os.close(slave)
    output = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    assert proc.wait(timeout=30) == 5
    os.close(master)
    text = output.decode(errors="replace")
    assert "/dev/pts/0" in text
    assert "33 101" in text


def test_memory_limit_oom_kill_is_reported(dy: Runner, busybox_image: str) -> None:
    proc = dy(
        "run",
        "--name",
        "hog",
        "--memory",
        "16m",
        "--memory-swap",
        "16m",
        busybox_image,
        "sh",
        "-c",
        "x=a; while true; do x=$x$x; done",
    )
    assert proc.returncode == 137
    out = dy("inspect", "-f", "{{.State.OOMKilled}} {{.State.ExitCode}}", "hog", check=True)
    assert out.stdout == "true 137\n"
