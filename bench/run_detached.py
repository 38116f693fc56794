"""50 containers started with `run -d` one after another, against 50 bare `runc run -d`."""

from __future__ import annotations

from _common import bench_env, report, timed

COUNT = 50


def main() -> None:
    with bench_env() as b:
        import json

        config_path = b.bundle / "config.json"
        config = json.loads(config_path.read_text())
        config["process"]["args"] = ["sleep", "1000"]
        config_path.write_text(json.dumps(config))
        # bare runc shares one rootfs, so mark it read-only for the run
        config["root"]["readonly"] = True
        config_path.write_text(json.dumps(config))

        def bare() -> None:
            for i in range(COUNT):
                b.runc("run", "-d", "--bundle", str(b.bundle), f"bare{i}")

        def ours() -> None:
            for _ in range(COUNT):
                b.dy("run", "-d", "busybox:latest", "sleep", "1000")

        bare_time = timed(bare)
        for i in range(COUNT):
            b.runc("kill", f"bare{i}", "KILL", check=False)
        ours_time = timed(ours)
        report(f"{COUNT} sequential run -d", ours_time, bare_time, "bare runc run -d", 2.0)


if __name__ == "__main__":
    main()
