#!/usr/bin/env python3
"""Write rate inside a named volume versus the host's own disk (target: ratio >= 95%).

Both sides run the same writer, busybox ``dd if=/dev/zero bs=1M conv=fsync``,
timed inside the same shell (``/proc/uptime`` before and after), so container
start-up is not counted. Runs alternate their order and each written file is
deleted and synced before the next run. The ratio compares total bytes over
total time of each side (best-of and median ratios are printed too: a VM's
disk is noisy). Inside: ``dockyard run --rm -v benchvol:/data busybox:latest
dd ...`` in a throw-away store; outside: the same dd binary on the host,
writing into a directory next to that store (same filesystem). Without a
working ``dockyard run`` the volume side writes into the volume's mountpoint
from the host instead (and says so).

    python3 bench/bench_volume.py [--size-mb 512] [--runs 8] [--dir /var/tmp]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
_TIMES = re.compile(r"^UPTIME ([0-9.]+) ([0-9.]+)$", re.M)


def dd_seconds(output: str) -> float:
    """Seconds dd took, from the /proc/uptime readings around it (10 ms resolution)."""
    match = _TIMES.search(output)
    if not match:
        raise RuntimeError(f"unexpected writer output: {output!r}")
    return float(match.group(2)) - float(match.group(1))


def dd_args(path: str, size_mb: int) -> list[str]:
    """A busybox shell timing dd itself (Debian's busybox dd prints no rate)."""
    script = (
        "read a _ < /proc/uptime; "
        f"dd if=/dev/zero of={path} bs=1M count={size_mb} conv=fsync 2>/dev/null || exit 1; "
        'read b _ < /proc/uptime; echo "UPTIME $a $b"'
    )
    return ["sh", "-c", script]


def host_dd(path: str, size_mb: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BUSYBOX, *dd_args(path, size_mb)], capture_output=True, text=True)


def settle(path: Path) -> None:
    """Delete the written file and let the disk finish freeing it (discard) before going on."""
    path.unlink()
    os.sync()
    time.sleep(1)


class Store:
    """A temporary dockyard store with the busybox test image and a named volume."""

    def __init__(self, base: Path) -> None:
        self.env = dict(os.environ)
        self.env["DOCKYARD_ROOT"] = str(base / "root")
        self.env["DOCKYARD_RUNROOT"] = str(base / "run")
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO / "src"), self.env.get("PYTHONPATH", "")) if p
        )
        self.base = base

    def dy(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dockyard", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    def setup(self) -> tuple[bool, str]:
        """(whether ``run`` works, the volume's mountpoint)."""
        sys.path.insert(0, str(REPO / "tests"))
        from conftest import make_busybox_tar

        tar = make_busybox_tar(self.base / "busybox.tar")
        created = self.dy("volume", "create", "benchvol")
        if created.returncode != 0:
            raise RuntimeError(f"volume create failed: {created.stderr}")
        mountpoint = self.base / "root" / "volumes" / "benchvol" / "_data"
        imported = self.dy("import", str(tar), "busybox:latest")
        if imported.returncode != 0:
            return False, str(mountpoint)
        probe = self.dy("run", "--rm", "busybox:latest", "true")
        return probe.returncode == 0, str(mountpoint)

    def cleanup(self) -> None:
        """Remove the volume, then unmount whatever the engine left under our base."""
        for cid in self.dy("ps", "-aq").stdout.split():
            self.dy("rm", "-f", cid)
        self.dy("volume", "rm", "-f", "benchvol")
        points = []
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = line.split()[4]
                if point.startswith(str(self.base) + "/"):
                    points.append(point)
        for point in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=512)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--dir", default="/var/tmp", help="where the temporary store goes")
    opts = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="dockyard-bench-vol-", dir=opts.dir))
    store = Store(base)
    try:
        in_container, mountpoint = store.setup()
        host_dir = base / "host"
        host_dir.mkdir()
        inside: list[float] = []
        outside: list[float] = []

        def write_inside() -> None:
            if in_container:
                proc = store.dy(
                    "run", "--rm", "-v", "benchvol:/data", "busybox:latest",
                    *dd_args("/data/f", opts.size_mb),
                )  # fmt: skip
                if proc.returncode != 0:
                    raise RuntimeError(f"dd in container failed: {proc.stderr}")
            else:
                proc = host_dd(f"{mountpoint}/f", opts.size_mb)
            inside.append(dd_seconds(proc.stdout))
            settle(Path(mountpoint) / "f")

        def write_outside() -> None:
            outside.append(dd_seconds(host_dd(str(host_dir / "f"), opts.size_mb).stdout))
            settle(host_dir / "f")

        write_outside()  # warm-up (page cache, allocator), not counted
        outside.clear()
        for i in range(opts.runs):
            # alternate the order, so neither side always follows the other's deletion
            for step in (
                (write_inside, write_outside) if i % 2 == 0 else (write_outside, write_inside)
            ):
                step()
        mb = opts.size_mb
        where = "container via dockyard run" if in_container else "host writing into the volume"
        for label, times in ((f"volume ({where})", inside), ("host disk", outside)):
            print(
                f"{label}: {mb * len(times) / sum(times):.1f} MB/s overall, "
                f"best {mb / min(times):.1f} MB/s, runs (s)={[round(x, 2) for x in times]}"
            )
        overall = sum(outside) / sum(inside)
        best = min(outside) / min(inside)
        median = statistics.median(outside) / statistics.median(inside)
        print(f"ratio: {overall * 100:.1f}% overall (best-of {best * 100:.1f}%, "
              f"median {median * 100:.1f}%); target >= 95%")  # fmt: skip
        return 0
    finally:
        store.cleanup()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
