#!/usr/bin/env python3
"""``dockyard build`` timings: cold build, fully cached rebuild, rebuild after a late change.

The Dockerfile builds FROM the busybox test image with five RUN steps and a
COPY of a 50 MB directory (200 files of 250 kB); the last step copies one
small file. Targets (issue 4): cold <= 2.5 s, cached <= 0.3 s, rebuild after
changing the small file copied last <= 0.6 s. Each figure is the median of
``--runs`` runs (the cold build runs with ``--no-cache``), in a throw-away
store.

    python3 bench/bench_build.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DOCKYARD, bench_env  # noqa: E402

DOCKERFILE = """\
FROM busybox:latest
RUN echo one > /one
RUN echo two > /two
RUN echo three > /three
RUN echo four > /four
RUN echo five > /five
COPY data /data
COPY small.txt /small.txt
CMD ["cat", "/small.txt"]
"""

TARGETS = {"cold": 2.5, "cached": 0.3, "late change": 0.6}


def make_context(root: Path) -> None:
    data = root / "data"
    data.mkdir(parents=True)
    chunk = os.urandom(250 * 1024)
    for i in range(200):
        (data / f"file{i:03d}.bin").write_bytes(chunk[i:] + chunk[:i])
    (root / "small.txt").write_text("version 0\n")
    (root / "Dockerfile").write_text(DOCKERFILE)


def timed_build(env: dict[str, str], context: Path, *extra: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        [*DOCKYARD, "build", "-q", "-t", "bench-build", *extra, str(context)],
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"build failed: {proc.stderr}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with bench_env() as b, tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        context = Path(tmp)
        make_context(context)
        timed_build(b.env, context)  # warm-up: monitor binary, page cache, checksums
        figures: dict[str, list[float]] = {k: [] for k in TARGETS}
        for i in range(args.runs):
            figures["cold"].append(timed_build(b.env, context, "--no-cache"))
            figures["cached"].append(timed_build(b.env, context))
            (context / "small.txt").write_text(f"version {i + 1}\n")
            figures["late change"].append(timed_build(b.env, context))
        subprocess.run([*DOCKYARD, "rmi", "-f", "bench-build"], env=b.env, capture_output=True)
    ok = True
    for name, target in TARGETS.items():
        value = statistics.median(figures[name])
        verdict = "ok" if value <= target else "SLOW"
        ok = ok and value <= target
        runs = ", ".join(f"{v:.2f}" for v in figures[name])
        print(f"{name:12s} {value:6.2f} s  (target <= {target} s, {verdict}; runs: {runs})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
