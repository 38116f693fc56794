"""`dockyard run --rm busybox true`: median against a bare `runc run` of the same rootfs."""

from __future__ import annotations

import itertools

from _common import bench_env, median_time, report

RUNS = 30


def main() -> None:
    with bench_env() as b:
        counter = itertools.count()
        bare = median_time(
            lambda: b.runc("run", "--bundle", str(b.bundle), f"bare{next(counter)}"), RUNS
        )
        ours = median_time(lambda: b.dy("run", "--rm", "busybox:latest", "true"), RUNS)
        report("run --rm true (median)", ours, bare, "bare runc run", 2.5)


if __name__ == "__main__":
    main()
