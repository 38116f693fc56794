"""`dockyard ps -a` over 100 containers (bound: 100 ms)."""

from __future__ import annotations

from _common import bench_env, median_time

COUNT = 100


def main() -> None:
    with bench_env() as b:
        for _ in range(COUNT):
            b.dy("create", "busybox:latest", "true")
        for _ in range(10):
            b.dy("run", "-d", "busybox:latest", "sleep", "1000")
        t = median_time(lambda: b.dy("ps", "-a"), 20)
        verdict = "ok" if t <= 0.1 else "OVER"
        print(f"ps -a over {COUNT + 10} containers: {t * 1000:.1f} ms (bound 100 ms) {verdict}")


if __name__ == "__main__":
    main()
