"""A container's networking: its namespace, endpoints, ports and /etc files.

``prepare`` runs at container start (before runc) and ``teardown`` at stop; both
hold the store's network lock, so concurrent starts and stops cannot race on a
bridge, an address or the rules. Addresses are allocated at start and released at
stop; the default bridge exists while a container uses it, a user network's
bridge while the network exists, its DNS server while a container of it runs.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dockyard.config import Paths
from dockyard.containers.spec import ContainerSpec
from dockyard.db import Database
from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.ids import new_id
from dockyard.network import config as netconfig
from dockyard.network import dnsctl, firewall, gc, ipam, kernel, options, ports, proxy, store
from dockyard.network.store import Endpoint, NetContainer, NetworkRecord
from dockyard.records import field, record


def now_rfc3339() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


@record
class NetworkSetup:
    """What the engine needs to start a container with its networking in place."""

    netns_path: str | None  # None: the host's namespace
    extra_mounts: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # inspect's NetworkSettings
    hostname: str = ""


def _image_config(image_config: dict[str, Any] | None) -> dict[str, Any]:
    cfg = image_config or {}
    return cfg["config"] if isinstance(cfg.get("config"), dict) else cfg


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


class Attacher:
    def __init__(
        self, paths: Paths, db: Database, config: netconfig.NetConfig | None = None
    ) -> None:
        self.paths = paths
        self.db = db
        self.cfg = config or netconfig.load(paths)
        self._lock_depth = 0
        self._lock_fd = -1
        store.ensure_schema(db)
        self._ensure_builtin()

    # -- plumbing ---------------------------------------------------------------

    @property
    def state_dir(self) -> Path:
        return self.paths.runroot / "network"

    def netns_path(self, container_id: str) -> Path:
        return self.paths.runroot / "netns" / container_id

    def _proxy_pids(self, container_id: str) -> Path:
        return self.state_dir / f"proxy-{container_id[:12]}.pids"

    @property
    def dns_pidfile(self) -> Path:
        return self.state_dir / "dns.pid"

    @contextmanager
    def lock(self) -> Iterator[None]:
        """The store-wide network lock (re-entrant within this object)."""
        if self._lock_depth == 0:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.state_dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._lock_fd = fd
        self._lock_depth += 1
        try:
            yield
        finally:
            self._lock_depth -= 1
            if self._lock_depth == 0:
                os.close(self._lock_fd)
                self._lock_fd = -1

    def _ensure_builtin(self) -> None:
        if len(self.db.query("SELECT id FROM networks WHERE builtin = 1")) >= 3:
            return
        gc.sweep_orphans()  # a new store: a good time to clear what deleted stores left
        with self.lock():
            have = {r[0] for r in self.db.query("SELECT name FROM networks WHERE builtin = 1")}
            subnet = self.cfg.default_subnet
            if "bridge" not in have and subnet is None:
                import ipaddress

                taken = [
                    ipaddress.IPv4Network(n.subnet)
                    for n in store.networks(self.db.conn)
                    if n.subnet
                ]
                subnet = ipam.pick_subnet(
                    self.cfg.default_pools, taken + ipam.host_networks([self.cfg.default_bridge])
                )
            with self.db.transaction() as conn:
                for name, driver in (("bridge", "bridge"), ("host", "host"), ("none", "null")):
                    if name in have:
                        continue
                    if conn.execute("SELECT 1 FROM networks WHERE name = ?", (name,)).fetchone():
                        conn.execute("UPDATE networks SET builtin = 1 WHERE name = ?", (name,))
                        continue
                    rec = NetworkRecord(
                        id=new_id(), name=name, driver=driver, created=now_rfc3339(), builtin=True
                    )
                    if driver == "bridge" and subnet is not None:
                        rec.subnet = str(subnet)
                        rec.gateway = self.cfg.default_gateway or str(next(subnet.hosts()))
                        rec.bridge = self.cfg.default_bridge
                    store.insert_network(conn, rec)

    def _default_bridge(self) -> NetworkRecord:
        rows = self.db.query("SELECT id FROM networks WHERE builtin = 1 AND driver = 'bridge'")
        net = store.network_by_id(self.db.conn, rows[0][0]) if rows else None
        if net is None:
            raise NotFound("network bridge not found")
        return net

    def _network_for_mode(self, mode: str) -> NetworkRecord:
        if mode == "bridge":
            return self._default_bridge()
        for net in store.networks(self.db.conn):
            if net.name == mode or net.id == mode:
                return net
        matches = [n for n in store.networks(self.db.conn) if n.id.startswith(mode)]
        if len(matches) == 1:
            return matches[0]
        raise NotFound(f"network {mode} not found")

    def sync_firewall(self) -> None:
        """Rewrite this store's rules from the database."""
        bridges = []
        for net in store.networks(self.db.conn):
            if not net.is_bridge or not net.bridge or not net.subnet:
                continue
            if net.is_default_bridge and not kernel.link_exists(net.bridge):
                continue
            bridges.append(firewall.BridgeRules(net.bridge, net.subnet, net.internal))
        rules = [
            firewall.PortRule(p.protocol, p.host_ip, p.host_port, p.container_ip, p.container_port)
            for p in store.ports(self.db.conn)
            if ":" not in p.host_ip  # IPv6 bindings are proxied (proxy.py), not NATed
        ]
        self.state_dir.mkdir(parents=True, exist_ok=True)
        firewall.apply(self.cfg, bridges, rules, cache=self._ruleset_cache)

    @property
    def _ruleset_cache(self) -> Path:
        return self.state_dir / "ruleset.nft"

    def _sync_quietly(self) -> None:
        try:
            self.sync_firewall()
        except Exception as err:  # teardown paths must not fail
            print(f"dockyard: network rules not updated: {err}", file=sys.stderr)

    def _bring_up(self, net: NetworkRecord) -> NetworkRecord:
        """The network's bridge, created if missing (the default one re-checks its subnet)."""
        assert net.bridge and net.subnet and net.gateway
        name = self.cfg.default_bridge if net.is_default_bridge else net.bridge
        if kernel.link_exists(name) and (name == net.bridge):
            return net
        if net.is_default_bridge:
            net = self._revalidate_default(net)
        kernel.enable_forwarding()
        self.make_bridge(net)
        return net

    def make_bridge(self, net: NetworkRecord) -> None:
        """Create the network's bridge, noting it for the orphan sweep first."""
        assert net.bridge and net.gateway
        gc.note_bridge(self.cfg, self.paths.root, self.paths.runroot, net.bridge)
        mtu = int(net.options.get("com.docker.network.driver.mtu", "1500"))
        kernel.ensure_bridge(net.bridge, net.gateway, net.prefixlen, mtu)

    def _revalidate_default(self, net: NetworkRecord) -> NetworkRecord:
        subnet = self.cfg.default_subnet
        gateway = self.cfg.default_gateway
        if subnet is None:
            import ipaddress

            current = ipaddress.IPv4Network(net.subnet)
            host = ipam.host_networks([self.cfg.default_bridge])
            if not any(current.overlaps(h) for h in host):
                subnet, gateway = current, net.gateway
            else:
                taken = [
                    ipaddress.IPv4Network(n.subnet)
                    for n in store.networks(self.db.conn)
                    if n.subnet and n.id != net.id
                ]
                subnet = ipam.pick_subnet(self.cfg.default_pools, taken + host)
        gateway = gateway or str(next(subnet.hosts()))
        if (str(subnet), gateway, self.cfg.default_bridge) != (net.subnet, net.gateway, net.bridge):
            with self.db.transaction() as conn:
                conn.execute(
                    "UPDATE networks SET subnet = ?, gateway = ?, bridge = ? WHERE id = ?",
                    (str(subnet), gateway, self.cfg.default_bridge, net.id),
                )
            net.subnet, net.gateway, net.bridge = str(subnet), gateway, self.cfg.default_bridge
        return net

    def _resolve_container(self, ref: str) -> str:
        ref = ref.removeprefix("/")
        for sql in (
            "SELECT id FROM containers WHERE id = ? OR name = ?",
            "SELECT container_id FROM net_containers WHERE container_id = ? OR name = ?",
        ):
            try:
                rows = self.db.query(sql, (ref, ref))
            except Exception:
                continue
            if rows:
                return str(rows[0][0])
        ids = [r[0] for r in self.db.query("SELECT container_id FROM net_containers")]
        try:
            ids += [r[0] for r in self.db.query("SELECT id FROM containers")]
        except Exception:
            pass
        matches = sorted({i for i in ids if ref and i.startswith(ref)})
        if len(matches) != 1:
            raise NotFound(f"No such container: {ref}")
        return matches[0]

    # -- attachments ------------------------------------------------------------------

    def ensure_rows(self, container_id: str, name: str, spec: ContainerSpec) -> None:
        """The container's configured networks: the one of its mode unless it has any."""
        if store.endpoints(self.db.conn, container_id=container_id):
            return
        mode = options.parse_network_mode(spec.network_mode)
        if mode in ("host", "none") or mode.startswith("container:"):
            return
        net = self._network_for_mode(mode)
        if net.driver != "bridge":
            raise InvalidArgument(f"network {net.name} cannot be used as a container network here")
        if spec.ip_address and not net.user_subnet:
            raise InvalidArgument(
                "user specified IP address is supported only when connecting to networks with "
                "user configured subnets"
            )
        ep = Endpoint(net.id, container_id, 0, list(spec.network_aliases), spec.ip_address)
        with self.db.transaction() as conn:
            store.insert_endpoint(conn, ep)

    def _activate(
        self, nc: NetContainer, net: NetworkRecord, ep: Endpoint, cif: str, route: bool
    ) -> Endpoint:
        net = self._bring_up(net)
        assert net.subnet and net.gateway and net.bridge and nc.netns
        with self.db.transaction() as conn:
            ep.ip = ipam.allocate(
                conn, net.id, net.subnet, net.gateway, net.ip_range, ep.requested_ip
            )
            ep.mac = ipam.mac_for(ep.ip)
            ep.endpoint_id = new_id()
            ep.host_if = self.cfg.veth_name(nc.container_id, net.id)
            ep.container_if = cif
            store.activate_endpoint(conn, ep)
        try:
            kernel.attach_veth(
                bridge=net.bridge,
                host_if=ep.host_if,
                netns=nc.netns,
                container_if=cif,
                ip=ep.ip,
                prefixlen=net.prefixlen,
                mac=ep.mac,
                gateway=net.gateway if route and not net.internal else None,
                mtu=int(net.options.get("com.docker.network.driver.mtu", "1500")),
            )
        except BaseException:
            with self.db.transaction() as conn:
                store.release_endpoint(conn, net.id, nc.container_id)
            raise
        if not net.builtin:
            self._start_dns(net)
        return ep

    def _start_dns(self, net: NetworkRecord) -> None:
        assert net.gateway
        dnsctl.serve(
            pidfile=self.dns_pidfile,
            db=self.paths.db,
            address=net.gateway,
            resolv=self.cfg.resolv_conf,
            log=self.state_dir / "dns.log",
        )

    def _stop_dns(self, net: NetworkRecord) -> None:
        """The network lost its last running container (or is going away)."""
        if net.gateway:
            dnsctl.release(self.dns_pidfile, self.paths.db, net.gateway)

    def _after_detach(self, network_ids: set[str]) -> None:
        """Stop the DNS servers that no running container needs any more.

        The default bridge stays, as Docker keeps docker0: creating and deleting a
        bridge for every lone container would cost each `run` tens of milliseconds.
        """
        for net_id in network_ids:
            net = store.network_by_id(self.db.conn, net_id)
            if net is None or any(e.ip for e in store.endpoints(self.db.conn, network_id=net_id)):
                continue
            if not net.builtin:
                self._stop_dns(net)

    def attach_live(self, nc: NetContainer, net: NetworkRecord, ep: Endpoint) -> None:
        """Connect a running container: a new interface in its namespace."""
        active = [e for e in store.endpoints(self.db.conn, container_id=nc.container_id) if e.ip]
        used = {e.container_if for e in active}
        cif = next(f"eth{i}" for i in range(len(used) + 1) if f"eth{i}" not in used)
        has_route = any(
            not (n := store.network_by_id(self.db.conn, e.network_id)) or not n.internal
            for e in active
        )
        try:
            self._activate(nc, net, ep, cif, route=not has_route)
        finally:
            kernel.release_netns_sockets()
        self.sync_firewall()

    def detach_live(self, container_id: str, net: NetworkRecord, ep: Endpoint) -> None:
        if not ep.ip:
            return
        nc = store.net_container(self.db.conn, container_id)
        try:
            kernel.detach_veth(ep.host_if, nc.netns if nc else None, ep.container_if)
        finally:
            kernel.release_netns_sockets()
        with self.db.transaction() as conn:
            store.release_endpoint(conn, net.id, container_id)
            conn.execute(
                "DELETE FROM net_ports WHERE container_id = ? AND container_ip = ?",
                (container_id, ep.ip),
            )
        self._after_detach({net.id})
        self.sync_firewall()

    # -- container start / stop ---------------------------------------------------

    def prepare(
        self, container_id: str, name: str, spec: ContainerSpec, image_config: dict[str, Any] | None
    ) -> NetworkSetup:
        """Set up the container's networking before runc runs; undone on failure."""
        options.validate_spec(spec)
        mode = options.parse_network_mode(spec.network_mode)
        with self.lock():
            nc = store.net_container(self.db.conn, container_id)
            if nc is not None and nc.active:
                self._teardown_locked(container_id)
            try:
                return self._prepare_locked(
                    container_id, name, spec, _image_config(image_config), mode
                )
            except BaseException:
                self._teardown_locked(container_id)
                raise
            finally:
                kernel.release_netns_sockets()  # an open one would keep the namespace alive

    def _prepare_locked(
        self, cid: str, name: str, spec: ContainerSpec, image_config: dict[str, Any], mode: str
    ) -> NetworkSetup:
        cdir = self.paths.container_dir(cid)
        cdir.mkdir(parents=True, exist_ok=True)
        host_resolv = options.read_resolv(self.cfg.resolv_conf)
        if mode.startswith("container:"):
            other_id = self._resolve_container(mode[len("container:") :])
            other = store.net_container(self.db.conn, other_id)
            if other is None or not other.active or other.mode.startswith("container:"):
                raise Conflict(f"cannot join network of a non running container: {mode[10:]}")
            nc = NetContainer(cid, name, f"container:{other_id}", None, other.hostname, [], True)
            with self.db.transaction() as conn:
                store.save_net_container(conn, nc)
            odir = self.paths.container_dir(other_id)
            return NetworkSetup(
                other.netns,
                self._mounts(odir),
                self.settings(cid, spec, image_config),
                other.hostname,
            )
        default_gw = self._default_bridge().gateway
        if mode == "host":
            import socket

            hostname = spec.hostname or socket.gethostname()
            nc = NetContainer(cid, name, "host", None, hostname, list(spec.dns), True)
            with self.db.transaction() as conn:
                store.save_net_container(conn, nc)
            try:
                base = Path("/etc/hosts").read_text()
            except OSError:
                base = options.hosts_text("localhost", None, [], [])
            extra = options.split_extra_hosts(spec.extra_hosts, default_gw)
            hosts = base.rstrip("\n") + "\n" + "".join(f"{ip}\t{h}\n" for h, ip in extra)
            conf = options.resolv_for(
                host_resolv, spec, embedded_dns=None, host_mode=True, default_dns=self.cfg.dns
            )
            self._write_files(cdir, hostname, hosts, options.resolv_text(conf))
            return NetworkSetup(
                None, self._mounts(cdir), self.settings(cid, spec, image_config), hostname
            )
        hostname = spec.hostname or cid[:12]
        netns = self.netns_path(cid)
        nc = NetContainer(
            cid,
            name,
            "none" if mode == "none" else "bridge",
            str(netns),
            hostname,
            list(spec.dns),
            True,
        )
        with self.db.transaction() as conn:
            store.save_net_container(conn, nc)
        kernel.create_netns(netns)
        addresses: list[str] = []
        embedded: str | None = None
        gw_net: NetworkRecord | None = None
        gw_ep: Endpoint | None = None
        if mode != "none":
            self.ensure_rows(cid, name, spec)
            eps = store.endpoints(self.db.conn, container_id=cid)
            nets = [store.network_by_id(self.db.conn, e.network_id) for e in eps]
            for ep, net in zip(eps, nets, strict=True):
                if net is None:
                    raise NotFound(f"network {ep.network_id} not found")
                route = gw_net is None and not net.internal
                self._activate(nc, net, ep, f"eth{len(addresses)}", route)
                assert ep.ip
                addresses.append(ep.ip)
                if route:
                    gw_net, gw_ep = net, ep
                if embedded is None and not net.builtin:
                    embedded = net.gateway
            bindings = ports.wanted_bindings(spec, image_config)
            ipv6: list[tuple[store.PortRecord, Any]] = []
            if bindings and gw_ep is not None and gw_ep.ip:
                with self.db.transaction() as conn:
                    records = ports.allocate(conn, cid, name, gw_ep.ip, bindings)
                    if proxy.host_has_ipv6():  # no host address given: IPv6 as well
                        every = [r for b, r in zip(bindings, records, strict=True) if not b.host_ip]
                        ipv6 = proxy.bind_ipv6(every, name)
                        for row, _ in ipv6:
                            store.insert_port(conn, row)
                proxy.start(self._proxy_pids(cid), ipv6, self.paths.db)
            self.sync_firewall()
        gateway = gw_net.gateway if gw_net is not None else default_gw
        extra = options.split_extra_hosts(spec.extra_hosts, gateway)
        hosts = options.hosts_text(hostname, spec.domainname, addresses, extra)
        conf = options.resolv_for(
            host_resolv, spec, embedded_dns=embedded, host_mode=False, default_dns=self.cfg.dns
        )
        self._write_files(cdir, hostname, hosts, options.resolv_text(conf))
        return NetworkSetup(
            str(netns), self._mounts(cdir), self.settings(cid, spec, image_config), hostname
        )

    @staticmethod
    def _write_files(cdir: Path, hostname: str, hosts: str, resolv: str) -> None:
        _write(cdir / "hostname", hostname + "\n")
        _write(cdir / "hosts", hosts)
        _write(cdir / "resolv.conf", resolv)

    @staticmethod
    def _mounts(cdir: Path) -> list[dict[str, Any]]:
        return [
            {
                "destination": f"/etc/{name}",
                "type": "bind",
                "source": str(cdir / name),
                "options": ["rbind", "rprivate"],
            }
            for name in ("resolv.conf", "hostname", "hosts")
        ]

    def teardown(self, container_id: str) -> None:
        """Release the container's networking (idempotent, never raises)."""
        try:
            with self.lock():
                self._teardown_locked(container_id)
        except Exception as err:
            print(f"dockyard: network teardown of {container_id[:12]}: {err}", file=sys.stderr)

    def _teardown_locked(self, cid: str) -> None:
        nc = store.net_container(self.db.conn, cid)
        active = [e for e in store.endpoints(self.db.conn, container_id=cid) if e.ip]
        if active and self.db.query(
            "SELECT 1 FROM net_containers WHERE active = 1 AND mode = ?", (f"container:{cid}",)
        ):
            # a container joined this namespace and keeps it alive: unplug it by hand
            # (otherwise removing the namespace removes the veth pairs, see kernel.py)
            for ep in active:
                try:
                    kernel.delete_link(ep.host_if or "")
                except Exception:
                    pass
        proxy.stop(self._proxy_pids(cid))
        had_ports = bool(store.ports(self.db.conn, cid))
        with self.db.transaction() as conn:
            for ep in active:
                store.release_endpoint(conn, ep.network_id, cid)
            conn.execute("DELETE FROM net_ports WHERE container_id = ?", (cid,))
            if nc is not None:
                nc.active, nc.netns = False, None
                store.save_net_container(conn, nc)
        try:
            kernel.delete_netns(self.netns_path(cid))
        except OSError:
            pass
        if active or had_ports:
            self._sync_quietly()
        try:
            # after the rules: deleting an idle default bridge waits for the kernel (an RCU
            # barrier), and the nft commit's own clean-up completes in that time instead of
            # making this process's exit wait for it (see firewall._Libnftables)
            self._after_detach({ep.network_id for ep in active})
        except Exception:
            pass

    def forget(self, container_id: str) -> None:
        """The container is removed: release its networking and drop its records."""
        self.teardown(container_id)
        with self.lock(), self.db.transaction() as conn:
            for table in ("net_endpoints", "net_ports", "net_containers"):
                conn.execute(f"DELETE FROM {table} WHERE container_id = ?", (container_id,))

    def cleanup_stale(self, is_running: Callable[[str], bool]) -> list[str]:
        """Tear down what containers that no longer run left behind; their IDs."""
        stale = [cid for cid in store.active_containers(self.db.conn) if not is_running(cid)]
        for cid in stale:
            self.teardown(cid)
        if stale:  # the rules may have been touched by hand as well: rewrite them
            firewall.forget_cache(self._ruleset_cache)
            self._sync_quietly()
        return stale

    def destroy_all(self) -> None:
        """Remove every kernel object of this store (tests, uninstall); records stay."""
        with self.lock():
            for cid in store.active_containers(self.db.conn):
                self._teardown_locked(cid)
            dnsctl.stop(self.dns_pidfile, self.paths.db)
            for net in store.networks(self.db.conn):
                if net.bridge:
                    kernel.delete_link(net.bridge)
            firewall.forget_cache(self._ruleset_cache)
            firewall.apply(self.cfg, [], [])
            netns_dir = self.paths.runroot / "netns"
            if netns_dir.exists():
                for entry in netns_dir.iterdir():
                    kernel.delete_netns(entry)
                kernel.delete_netns(netns_dir)
            gc.forget_store(self.cfg)

    # -- views ------------------------------------------------------------------------

    def port_lines(self, container_id: str, port: str | None = None) -> list[str]:
        """``docker port`` lines of a running container ("80/tcp -> 0.0.0.0:8080")."""
        return ports.port_lines(store.ports(self.db.conn, container_id), port)

    def settings(
        self, container_id: str, spec: ContainerSpec, image_config: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Docker's NetworkSettings for a container, running or not."""
        from dockyard.network.views import network_settings

        return network_settings(self, container_id, spec, _image_config(image_config))
