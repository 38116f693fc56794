"""Where the time of `run --rm busybox true` goes, against the floor any Python engine pays.

Measured in one run, medians of RUNS:
- bare `runc run` of `runc spec`'s default bundle (the baseline of run_rm.py);
- bare `runc run` of the very config.json dockyard writes (Docker's defaults: seccomp
  profile, capabilities, masked paths, cgroup mounts), with and without its seccomp filter;
- the Python interpreter starting and importing only json and sqlite3, the least an
  engine that keeps its state in SQLite and writes config.json must load;
- `dockyard run --rm`.
The floor is runc with dockyard's config plus that interpreter start: no Python engine
giving Docker's defaults can start a container faster than that.
"""

from __future__ import annotations

import copy
import itertools
import json
import subprocess
import sys
from pathlib import Path

from _common import REPO, bench_env, median_time

RUNS = 30


def main() -> None:
    with bench_env() as b:
        counter = itertools.count()
        b.dy("run", "--name", "floor-config", "busybox:latest", "true")
        cid = b.dy("inspect", "-f", "{{.Id}}", "floor-config", quiet=False).stdout.decode().strip()
        ours_config = json.loads((b.base / "root/containers" / cid / "config.json").read_text())
        ours_config["process"]["args"] = ["true"]
        ours_config["root"] = {"path": str(b.bundle / "rootfs"), "readonly": False}
        for ns in ours_config["linux"]["namespaces"]:
            ns.pop("path", None)  # a fresh empty netns instead of the bridge's
        no_seccomp = copy.deepcopy(ours_config)
        del no_seccomp["linux"]["seccomp"]

        def bundle(name: str, config: dict[str, object]) -> Path:
            path = b.base / name
            path.mkdir()
            (path / "config.json").write_text(json.dumps(config))
            return path

        ours_bundle = bundle("bundle-dockyard", ours_config)
        plain_bundle = bundle("bundle-no-seccomp", no_seccomp)

        def runc_run(path: Path) -> None:
            n = next(counter)
            config = json.loads((path / "config.json").read_text())
            config["linux"]["cgroupsPath"] = f"/dockyard-bench/floor{n}"
            (path / "config.json").write_text(json.dumps(config))
            b.runc("run", "--bundle", str(path), f"floor{n}")

        venv_python = REPO / ".venv/bin/python"
        python = str(venv_python) if venv_python.exists() else sys.executable

        def interpreter() -> None:
            subprocess.run([python, "-S", "-c", "import json, sqlite3"], check=True)

        bare = median_time(
            lambda: b.runc("run", "--bundle", str(b.bundle), f"bare{next(counter)}"), RUNS
        )
        with_config = median_time(lambda: runc_run(ours_bundle), RUNS)
        without_seccomp = median_time(lambda: runc_run(plain_bundle), RUNS)
        start = median_time(interpreter, RUNS)
        ours = median_time(lambda: b.dy("run", "--rm", "busybox:latest", "true"), RUNS)
        warm = _in_process(b.env)
        for controller in Path("/sys/fs/cgroup").iterdir():
            try:
                (controller / "dockyard-bench").rmdir()
            except OSError:
                pass

        def line(label: str, seconds: float) -> None:
            print(f"  {label:<52} {seconds * 1000:7.1f} ms  {seconds / bare:5.2f}x")

        print("run --rm true, medians against bare runc run of runc's default spec:")
        line("bare runc run, runc spec's default config", bare)
        line("bare runc run, dockyard's config.json", with_config)
        line("bare runc run, dockyard's config.json without seccomp", without_seccomp)
        line("python -S, importing json and sqlite3", start)
        line("floor: runc with dockyard's config + that interpreter", with_config + start)
        line("dockyard run --rm", ours)
        line("dockyard run --rm, warm in one process (no start-up)", warm)
        line("  of which the engine's own work (minus runc)", warm - with_config)
        line("  interpreter start-up and imports (run --rm minus warm)", ours - warm)
        line("floor + the engine's warm work", with_config + start + warm - with_config)


def _in_process(env: dict[str, str]) -> float:
    """`run --rm` through the CLI's main() in this process, after a first run has
    imported everything: the engine's work plus runc, without interpreter start-up."""
    import contextlib
    import io
    import os

    from dockyard.cli.main import main as dockyard

    saved = {k: os.environ.get(k) for k in ("DOCKYARD_ROOT", "DOCKYARD_RUNROOT")}
    os.environ.update({k: env[k] for k in saved})
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return median_time(lambda: dockyard(["run", "--rm", "busybox:latest", "true"]), RUNS)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


if __name__ == "__main__":
    main()
