"""Published-port overhead: 127.0.0.1:HOSTPORT (kernel DNAT) vs the container address.

A simulated container (its namespace, veth and rules made by NetworkManager.prepare,
as for a real one) runs busybox httpd; a Python client measures bulk throughput
(a large file) and requests per second (a new connection per small request, since
busybox httpd closes each connection: this is what conntrack/NAT cost shows in).
Rounds alternate between the two targets (which goes first alternates too) and the
medians are compared.

Run as root: ``python bench/bench_ports.py [--size-mb 256] [--seconds 3] [--rounds 9]``.
Traffic stays on this machine (loopback and a bridge the benchmark creates); every
object is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from dockyard.config import Paths  # noqa: E402
from dockyard.containers.spec import ContainerSpec  # noqa: E402
from dockyard.db import Database  # noqa: E402
from dockyard.ids import new_id  # noqa: E402
from dockyard.network.manager import NetworkManager  # noqa: E402
from dockyard.network.options import parse_publish  # noqa: E402

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def get(host: str, port: int, path: str, buf: bytearray) -> int:
    """One HTTP/1.0 GET on a new connection; the bytes received."""
    total = 0
    view = memoryview(buf)
    with socket.create_connection((host, port), timeout=10) as s:
        # close with RST: no TIME_WAIT pile-up (it would exhaust ports and skew the rates)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n".encode())
        while True:
            n = s.recv_into(view)
            if not n:
                return total
            total += n


def throughput(host: str, port: int, size: int) -> float:
    buf = bytearray(1 << 20)
    start = time.perf_counter()
    got = get(host, port, "/big.bin", buf)
    elapsed = time.perf_counter() - start
    if got < size:
        raise RuntimeError(f"short read from {host}:{port}: {got} < {size}")
    return got / elapsed / 1e6


def rps(host: str, port: int, seconds: float) -> float:
    buf = bytearray(65536)
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline and count < 1_000_000:
        get(host, port, "/small.txt", buf)
        count += 1
    return count / (time.perf_counter() - start)


def wait_listening(netns: str, port: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["nsenter", f"--net={netns}", "cat", "/proc/net/tcp", "/proc/net/tcp6"],
            capture_output=True,
            text=True,
        ).stdout
        if any(f":{port:04X} " in ln and ln.split()[3] == "0A" for ln in out.splitlines()[1:]):
            return
        time.sleep(0.05)
    raise RuntimeError("httpd did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root (network namespaces, bridges, nftables)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="dockyard-bench-"))
    resolv = tmp / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")
    os.environ["DOCKYARD_RESOLV_CONF"] = str(resolv)
    www = tmp / "www"
    www.mkdir()
    size = args.size_mb << 20
    with open(www / "big.bin", "wb") as f:
        f.truncate(size)
    (www / "small.txt").write_text("ok\n")
    paths = Paths(tmp / "root", tmp / "run")
    paths.ensure()
    db = Database(paths.db)
    mgr = NetworkManager(paths, db)
    cid = new_id()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        host_port = s.getsockname()[1]
    server = None
    try:
        setup = mgr.prepare(
            cid, "bench", ContainerSpec(image="busybox", ports=parse_publish(f"{host_port}:80")), {}
        )
        assert setup.netns_path
        ip = setup.settings["IPAddress"]
        server = subprocess.Popen(
            [
                "nsenter",
                f"--net={setup.netns_path}",
                BUSYBOX,
                "httpd",
                "-f",
                "-p",
                "80",
                "-h",
                str(www),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_listening(setup.netns_path, 80)
        targets = {"direct": (ip, 80), "published": ("127.0.0.1", host_port)}
        results: dict[str, dict[str, list[float]]] = {t: {"mbps": [], "rps": []} for t in targets}
        for h, p in targets.values():  # warm-up
            throughput(h, p, size)
            rps(h, p, 0.3)
        # short alternating slices, so background load hits both targets alike
        slices = max(1, int(args.seconds / 0.25))
        for round_no in range(args.rounds):
            order = list(targets.items())
            if round_no % 2:  # neither target always goes first (page cache, CPU clocks)
                order.reverse()
            for name, (h, p) in order:
                results[name]["mbps"].append(throughput(h, p, size))
            counts = dict.fromkeys(targets, 0.0)
            for _ in range(slices):
                for name, (h, p) in targets.items():
                    counts[name] += rps(h, p, args.seconds / slices)
            for name in targets:
                results[name]["rps"].append(counts[name] / slices)
        med = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in results.items()}
        print(f"{'target':<12}{'MB/s':>12}{'requests/s':>14}")
        for name in targets:
            print(f"{name:<12}{med[name]['mbps']:>12.1f}{med[name]['rps']:>14.1f}")
        tput = med["published"]["mbps"] / med["direct"]["mbps"]
        rate = med["published"]["rps"] / med["direct"]["rps"]
        print(
            f"ratio published/direct: throughput {tput:.1%}, requests/s {rate:.1%} (target >= 90%)"
        )
        return 0 if min(tput, rate) >= 0.9 else 1
    finally:
        if server is not None:
            server.kill()
            server.wait()
        mgr.teardown(cid)
        mgr.destroy_all()
        db.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
