"""Shared set-up for the benchmarks: a throw-away store with the busybox image, a bare
runc bundle of the same rootfs, and timing helpers. Every script prints its ratio."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCKYARD = (
    [str(REPO / ".venv/bin/dockyard")]
    if (REPO / ".venv/bin/dockyard").exists()
    else [sys.executable, "-m", "dockyard"]
)


class Bench:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.env = dict(
            os.environ, DOCKYARD_ROOT=str(base / "root"), DOCKYARD_RUNROOT=str(base / "run")
        )
        self.runc_root = base / "runc-bare"
        self.bundle = base / "bundle"

    def dy(
        self, *args: str, check: bool = True, quiet: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [*DOCKYARD, *args],
            env=self.env,
            check=check,
            stdout=subprocess.DEVNULL if quiet else subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def runc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        # no pipes: a detached container would hold them open and never let run() return
        return subprocess.run(
            ["runc", "--root", str(self.runc_root), *args],
            check=check,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_time(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm-up
    return statistics.median(timed(fn) for _ in range(runs))


@contextmanager
def bench_env() -> Iterator[Bench]:
    # byte-compile first: PYTHONDONTWRITEBYTECODE would make every command recompile
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(REPO / "src/dockyard")],
        stdout=subprocess.DEVNULL,
        check=False,
    )
    base = Path(tempfile.mkdtemp(prefix="dockyard-bench-"))
    b = Bench(base)
    try:
        tar = base / "busybox.tar"
        with open(tar, "wb") as f:
            subprocess.run([str(REPO / "scripts/busybox-rootfs.sh")], stdout=f, check=True)
        b.dy("import", str(tar), "busybox:latest")
        rootfs = b.bundle / "rootfs"
        rootfs.mkdir(parents=True)
        subprocess.run(["tar", "-C", str(rootfs), "-xf", str(tar)], check=True)
        subprocess.run(["runc", "spec"], cwd=b.bundle, check=True)
        config = json.loads((b.bundle / "config.json").read_text())
        config["process"]["terminal"] = False
        config["process"]["args"] = ["true"]
        (b.bundle / "config.json").write_text(json.dumps(config))
        yield b
    finally:
        subprocess.run([*DOCKYARD, "rm", "-f", *_all_ids(b)], env=b.env, capture_output=True)
        if b.runc_root.exists():
            for cid in os.listdir(b.runc_root):
                subprocess.run(
                    ["runc", "--root", str(b.runc_root), "delete", "-f", cid], capture_output=True
                )
        from dockyard.config import Paths
        from dockyard.reset import reset

        reset(Paths(base / "root", base / "run"))
        shutil.rmtree(base, ignore_errors=True)


def _all_ids(b: Bench) -> list[str]:
    out = subprocess.run(
        [*DOCKYARD, "ps", "-aq", "--no-trunc"], env=b.env, capture_output=True, text=True
    )
    return out.stdout.split()


def report(
    name: str, ours: float, baseline: float, baseline_name: str, bound: float, unit: str = "s"
) -> None:
    ratio = ours / baseline if baseline else float("inf")
    verdict = "ok" if ratio <= bound else "OVER"
    print(
        f"{name}: dockyard {ours:.4f}{unit}, {baseline_name} {baseline:.4f}{unit}, "
        f"ratio {ratio:.2f} (bound {bound}) {verdict}"
    )
