"""`dockyard update`: limits applied to a running container, restart policy, errors."""

from __future__ import annotations

import time
from pathlib import Path

from conftest import Runner


def _cgroup(cid: str, controller: str, name: str) -> str:
    return Path(f"/sys/fs/cgroup/{controller}/dockyard/{cid}/{name}").read_text().strip()


def test_update_limits_and_restart_policy(dy: Runner, busybox_image: str) -> None:
    cid = dy("run", "-d", "-m", "64m", busybox_image, "sh", "-c", "sleep 1; exit 3").stdout.strip()
    out = dy("update", "--restart", "on-failure:2", "-m", "128m", "--cpus", "0.5",
             "--pids-limit", "50", cid[:12], check=True)  # fmt: skip
    assert out.stdout == f"{cid[:12]}\n"
    if Path("/sys/fs/cgroup/memory").is_dir():  # cgroup v1, as on this kind of host
        assert _cgroup(cid, "memory", "memory.limit_in_bytes") == str(128 * 1024 * 1024)
        assert _cgroup(cid, "pids", "pids.max") == "50"
        assert _cgroup(cid, "cpu", "cpu.cfs_quota_us") == "50000"
    fmt = "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}}"
    assert dy("inspect", "-f", fmt, cid, check=True).stdout == "134217728 500000000 50\n"
    policy = "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"
    assert dy("inspect", "-f", policy, cid, check=True).stdout == "on-failure:2\n"
    deadline = time.monotonic() + 20  # the running monitor applies the new policy
    while time.monotonic() < deadline:
        state = dy("inspect", "-f", "{{.RestartCount}} {{.State.Status}}", cid).stdout.split()
        if state == ["2", "exited"]:
            break
        time.sleep(0.2)
    assert state == ["2", "exited"]


def test_update_errors(dy: Runner, busybox_image: str) -> None:
    dy("run", "-d", "--rm", "--name", "temp", busybox_image, "sleep", "30", check=True)
    refused = dy("update", "--restart", "always", "temp")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert "AutoRemove is enabled" in refused.stderr and "Cannot update container" in refused.stderr
    assert dy("update", "temp").returncode == 1
    assert "No such container" in dy("update", "-m", "10m", "ghost").stderr
    small = dy("update", "-m", "1m", "temp")
    assert small.returncode == 1 and "Minimum memory limit allowed is 6MB" in small.stderr
