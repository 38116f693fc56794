"""Memory dockyard adds per running detached container: PSS of every process it keeps
for the containers (the monitors), with 50 running, divided by 50."""

from __future__ import annotations

import os

from _common import bench_env

COUNT = 50


def pss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    with bench_env() as b:
        for _ in range(COUNT):
            b.dy("run", "-d", "busybox:latest", "sleep", "1000")
        run_dir = b.base / "run" / "containers"
        total = 0
        monitors = 0
        for cid in os.listdir(run_dir):
            pid = int((run_dir / cid / "monitor.pid").read_text())
            total += pss_kib(pid)
            monitors += 1
        per = total / COUNT / 1024
        verdict = "ok" if per <= 1.0 else "OVER"
        print(
            f"memory per idle container: {per:.3f} MB PSS ({monitors} monitors, "
            f"{total} KiB total; bound 1 MB; Podman's conmon ~0.37 MB) {verdict}"
        )


if __name__ == "__main__":
    main()
