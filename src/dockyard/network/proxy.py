"""IPv6 for published TCP ports: ``-p 8080:80`` answers on ``[::]:8080`` as with Docker.

IPv4 bindings are DNAT rules in the kernel. An IPv4-only container cannot be reached
from an IPv6 address by NAT (netfilter does not translate between families), so each
TCP binding on every address also gets a ``dockyard-proxy`` (``proxy/proxy.c``, the
part of Docker's docker-proxy that is still needed): this module binds the IPv6
socket itself, so that a taken port fails the start with Docker's message, hands it
to the proxy and stops the proxy (its process group) at teardown. Hosts without IPv6
get no proxy; UDP gets none either.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

from dockyard.errors import Conflict
from dockyard.network.store import PortRecord
from dockyard.procs import wait_gone

SOURCE = Path(__file__).resolve().parent / "proxy" / "proxy.c"
BINARY_PREFIX = "dockyard-proxy"


def host_has_ipv6() -> bool:
    try:
        with open("/proc/sys/net/ipv6/conf/all/disable_ipv6") as f:
            return socket.has_ipv6 and f.read().strip() == "0"
    except OSError:
        return False


def bind_ipv6(
    records: list[PortRecord], endpoint_name: str
) -> list[tuple[PortRecord, socket.socket]]:
    """Listening ``[::]:PORT`` sockets for the TCP records bound on every address, with
    the rows that show them; a port taken there is Docker's conflict error."""
    bound: list[tuple[PortRecord, socket.socket]] = []
    try:
        for r in records:
            if r.protocol != "tcp" or r.host_ip:
                continue
            sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("::", r.host_port))
                sock.listen(128)
            except OSError as err:
                sock.close()
                raise Conflict(
                    f"driver failed programming external connectivity on endpoint "
                    f"{endpoint_name}: listen tcp6 [::]:{r.host_port}: bind: "
                    f"{(err.strerror or str(err)).lower()}"
                ) from None
            row = PortRecord(
                r.container_id, "tcp", "::", r.host_port, r.container_ip, r.container_port
            )
            bound.append((row, sock))
    except BaseException:
        for _, sock in bound:
            sock.close()
        raise
    return bound


def start(state_file: Path, bound: list[tuple[PortRecord, socket.socket]], db: Path) -> None:
    """A proxy per socket, in a session of its own; their PIDs go to ``state_file``.
    Their command lines name the store's database, for ``gc`` to find them."""
    if not bound:
        return
    from dockyard import cbuild

    binary = cbuild.binary(SOURCE, BINARY_PREFIX, "port proxy")
    state_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        # no stdio of ours: a caller reading our output would wait for the proxy to end
        with open(state_file, "a") as pids, open(state_file.with_suffix(".log"), "ab") as log:
            for row, sock in bound:
                proc = subprocess.Popen(
                    [
                        binary,
                        "--listen-fd",
                        str(sock.fileno()),
                        "--container-ip",
                        row.container_ip,
                        "--container-port",
                        str(row.container_port),
                        "--store",
                        str(db),
                    ],
                    pass_fds=(sock.fileno(),),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    start_new_session=True,
                    cwd="/",
                )
                proc.returncode = 0  # detached on purpose: no ResourceWarning
                pids.write(f"{proc.pid}\n")
    finally:
        for _, sock in bound:
            sock.close()


def stop(state_file: Path) -> None:
    """End the proxies listed in ``state_file`` and their connections; quiet if gone."""
    try:
        pids = [int(line) for line in state_file.read_text().split()]
    except (OSError, ValueError):
        return
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if BINARY_PREFIX.encode() not in cmdline:
            continue  # the PID was reused by someone else's process
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        wait_gone(pid, 2)  # its port is free for the next container when we return
    state_file.unlink(missing_ok=True)
    state_file.with_suffix(".log").unlink(missing_ok=True)
