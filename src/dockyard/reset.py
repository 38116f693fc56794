"""Tear down everything a store has running or mounted (``dockyard system reset``).

Tests and benchmarks use it to leave no container, monitor, mount, bridge,
firewall table or DNS server behind; users use it to wipe a store.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from dockyard.config import Paths


def stop_everything(paths: Paths) -> None:
    """Kill every container and monitor of the store, remove its network objects, unmount."""
    runc_root = paths.runtime_state
    if runc_root.is_dir():
        for cid in os.listdir(runc_root):
            for args in (["kill", cid, "KILL"], ["delete", "--force", cid]):
                subprocess.run(["runc", "--root", str(runc_root), *args], capture_output=True)
    if paths.container_run.is_dir():
        for cid in os.listdir(paths.container_run):
            try:
                os.kill(int((paths.container_run / cid / "monitor.pid").read_text()), 9)
            except (OSError, ValueError):
                pass
    if paths.db.exists():
        from dockyard.db import Database
        from dockyard.network.manager import NetworkManager

        db = Database(paths.db)
        try:
            NetworkManager(paths, db).destroy_all()
        finally:
            db.close()
    unmount_below(paths.root, paths.runroot)


def unmount_below(*roots: Path) -> None:
    """Lazily unmount every mount point under the given directories, deepest first."""
    prefixes = tuple(str(r).rstrip("/") + "/" for r in roots)
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefixes) or point in (str(r) for r in roots):
                points.append(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def reset(paths: Paths) -> None:
    """Stop everything, then delete both roots."""
    import shutil

    stop_everything(paths)
    shutil.rmtree(paths.root, ignore_errors=True)
    shutil.rmtree(paths.runroot, ignore_errors=True)
