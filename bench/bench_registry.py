#!/usr/bin/env python3
"""Push and pull against a local docker-registry, compared with skopeo in the same run.

1. One image with a single 200 MB random layer (stored uncompressed, as ``import``
   and ``commit`` store them): ``dockyard push`` vs ``skopeo copy`` of the same
   image (an OCI layout) into the same registry; both gzip on the way.
2. ``dockyard pull`` into a fresh store (download, verify, unpack) vs ``skopeo copy``
   of the image from the registry into an OCI layout (download only).
3. A second, unchanged push (target: <= 0.1 s for the push itself).
4. An 8-layer image pulled with 3 parallel downloads vs one at a time.

    python3 bench/bench_registry.py [--size-mb 200] [--layers 8] [--layer-mb 16]
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]

from test_registry_support import start_registry, tar_bytes, write_oci_layout  # noqa: E402

DOCKYARD = (
    [str(REPO / ".venv/bin/python"), "-m", "dockyard"]
    if (REPO / ".venv/bin/python").exists()
    else [sys.executable, "-m", "dockyard"]
)


def timed_run(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr}")
    return elapsed


def random_tar(size: int) -> bytes:
    return tar_bytes({"payload.bin": os.urandom(size)})


def compressible_tar(size: int) -> bytes:
    """Base64 of random bytes: gzip shrinks it to ~75%, so unpacking costs real CPU."""
    return tar_bytes({"text.b64": base64.b64encode(os.urandom(size * 3 // 4))})


def make_image(env: dict[str, str], ref: str, layers: list[bytes]) -> str:
    from dockyard.cli.context import Context

    ctx = Context(root=env["DOCKYARD_ROOT"], runroot=env["DOCKYARD_RUNROOT"])
    try:
        records = [ctx.images.ingest_layer(io.BytesIO(data)) for data in layers]
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["sh"]},
            "created": "2024-01-01T00:00:00Z",
        }
        return str(ctx.images.create_image(config, records, [ref]).id)
    finally:
        ctx.close()


def pull_in_process(env: dict[str, str], ref: str, downloads: int) -> float:
    from dockyard.cli.context import Context
    from dockyard.images.reference import parse
    from dockyard.registry import pull as pull_module
    from dockyard.registry.progress import Progress

    ctx = Context(root=env["DOCKYARD_ROOT"], runroot=env["DOCKYARD_RUNROOT"])
    old = pull_module.MAX_DOWNLOADS
    pull_module.MAX_DOWNLOADS = downloads
    try:
        start = time.perf_counter()
        pull_module.pull(ctx.images, parse(ref), progress=Progress(io.StringIO()))
        return time.perf_counter() - start
    finally:
        pull_module.MAX_DOWNLOADS = old
        ctx.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--layer-mb", type=int, default=16)
    opts = parser.parse_args()
    skopeo = shutil.which("skopeo")
    base = Path(tempfile.mkdtemp(prefix="dockyard-bench-registry-"))
    reg = start_registry(base / "registry")
    os.environ["DOCKER_CONFIG"] = str(base / "docker-config")

    def store_env(name: str) -> dict[str, str]:
        return dict(
            os.environ,
            DOCKYARD_ROOT=str(base / name / "root"),
            DOCKYARD_RUNROOT=str(base / name / "run"),
            PYTHONPATH=str(REPO / "src"),
        )

    try:
        env = store_env("src")
        big = random_tar(opts.size_mb * 1_000_000)
        ref = f"{reg.host}/big:latest"
        make_image(env, ref, [big])
        print(f"image: one {len(big) / 1e6:.0f} MB random layer, registry {reg.host}")

        push_s = timed_run([*DOCKYARD, "push", ref], env)
        print(f"dockyard push:            {push_s:6.2f} s")
        if skopeo:
            layout = write_oci_layout(base / "layout", "v1", [("linux", "amd64", big)], index=False)
            sk_push = timed_run(
                [
                    skopeo,
                    "copy",
                    "--dest-tls-verify=false",
                    "--dest-compress",
                    f"oci:{layout}:v1",
                    f"docker://{reg.host}/big-skopeo:latest",
                ],
                env,
            )
            print(
                f"skopeo copy (push):       {sk_push:6.2f} s   ratio dockyard/skopeo "
                f"{push_s / sk_push:.2f}"
            )

        import statistics

        again = statistics.median(timed_run([*DOCKYARD, "push", ref], env) for _ in range(9))
        from dockyard.cli.context import Context
        from dockyard.images.reference import parse
        from dockyard.registry.progress import Progress
        from dockyard.registry.push import push

        os.environ.update({k: env[k] for k in ("DOCKYARD_ROOT", "DOCKYARD_RUNROOT")})
        ctx = Context(root=env["DOCKYARD_ROOT"], runroot=env["DOCKYARD_RUNROOT"])
        push(ctx.images, parse(ref), progress=Progress(io.StringIO()))
        start = time.perf_counter()
        push(ctx.images, parse(ref), progress=Progress(io.StringIO()))
        in_process = time.perf_counter() - start
        ctx.close()
        print(
            f"second push:              {again:6.3f} s (command, median of 9), {in_process * 1000:.1f} ms "
            f"(the push itself; target <= 100 ms)"
        )

        pull_s = timed_run([*DOCKYARD, "pull", ref], store_env("pull"))
        print(f"dockyard pull:            {pull_s:6.2f} s   (download + verify + unpack)")
        if skopeo:
            sk_pull = timed_run(
                [
                    skopeo,
                    "copy",
                    "--src-tls-verify=false",
                    f"docker://{ref}",
                    f"oci:{base / 'skopeo-out'}:v1",
                ],
                env,
            )
            print(
                f"skopeo copy (pull):       {sk_pull:6.2f} s   ratio dockyard/skopeo "
                f"{pull_s / sk_pull:.2f}"
            )

        layers = [compressible_tar(opts.layer_mb * 1_000_000) for _ in range(opts.layers)]
        multi = f"{reg.host}/multi:latest"
        make_image(env, multi, layers)
        timed_run([*DOCKYARD, "push", multi], env)
        runs: dict[int, list[float]] = {3: [], 1: []}
        for i in range(3):  # alternate, so page-cache writeback hits both alike
            for downloads in (1, 3) if i % 2 else (3, 1):
                runs[downloads].append(
                    pull_in_process(store_env(f"pull-{downloads}-{i}"), multi, downloads)
                )
                shutil.rmtree(base / f"pull-{downloads}-{i}", ignore_errors=True)
        parallel, serial = statistics.median(runs[3]), statistics.median(runs[1])
        print(
            f"{opts.layers}-layer pull ({opts.layer_mb} MB each): 3 parallel {parallel:.2f} s, "
            f"one at a time {serial:.2f} s (medians of 3), speed-up {serial / parallel:.2f}x"
        )
    finally:
        reg.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
