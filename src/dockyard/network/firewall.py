"""NAT and filter rules, regenerated as a whole from the store's state.

Every change (a network created or removed, a container started or stopped)
rewrites this store's rules in one atomic step from the database: nothing is
edited in place, so a crashed command leaves no half-state that the next sync
does not fix, and removing the last network removes every rule.

nftables (preferred): one table ``ip dockyard[_<hash>]``. Published ports are two
maps (``proto . port`` and ``addr . proto . port`` to ``container addr . port``)
used by one DNAT rule each in prerouting and output; postrouting masquerades
outbound traffic, 127.0.0.0/8 sources leaving through a bridge (localhost
publishing) and DNATed traffic from a container network back into a bridge
(hairpin). The forward chain isolates networks from each other and from the
outside. No userland proxy is involved.

A packet must be accepted by every base chain on the forward hook: when the
iptables filter FORWARD policy is DROP (Docker sets it), a ``DOCKYARD-FORWARD``
chain jumped from FORWARD accepts our bridges' traffic. Docker's own rules are
never touched. Without ``nft`` the same rules are written with iptables.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dockyard.network.config import NetConfig
from dockyard.network.kernel import NetworkError


@dataclass
class BridgeRules:
    bridge: str
    subnet: str
    internal: bool


@dataclass
class PortRule:
    protocol: str
    host_ip: str  # "" for every host address
    host_port: int
    container_ip: str
    container_port: int


def _run(argv: list[str], stdin: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise NetworkError(f"{argv[0]} failed: {proc.stderr.strip()}")
    return proc.stdout


def _q(name: str) -> str:
    return f'"{name}"'


def nft_script(table: str, bridges: list[BridgeRules], ports: list[PortRule]) -> str:
    """The complete table (or its removal when there is nothing to route)."""
    head = f"table ip {table} {{}}\ndelete table ip {table}\n"
    if not bridges:
        return head
    names = ", ".join(_q(b.bridge) for b in bridges)
    subnets = ", ".join(b.subnet for b in bridges)
    any_elems = [
        f"{p.protocol} . {p.host_port} : {p.container_ip} . {p.container_port}"
        for p in ports
        if not p.host_ip or p.host_ip == "0.0.0.0"
    ]
    ip_elems = [
        f"{p.host_ip} . {p.protocol} . {p.host_port} : {p.container_ip} . {p.container_port}"
        for p in ports
        if p.host_ip and p.host_ip != "0.0.0.0"
    ]

    def map_def(name: str, key: str, elems: list[str]) -> str:
        body = f"type {key} : ipv4_addr . inet_service;"
        if elems:
            body += " elements = { " + ", ".join(elems) + " };"
        return f"  map {name} {{ {body} }}\n"

    post = [
        f"ct status dnat ip saddr {{ {subnets} }} oifname {{ {names} }} masquerade",
        f"ip saddr 127.0.0.0/8 oifname {{ {names} }} masquerade",
    ]
    fwd = [
        "ct state established,related accept",
        f"ct status dnat oifname {{ {names} }} accept",
    ]
    for b in bridges:
        others = [_q(o.bridge) for o in bridges if o.bridge != b.bridge]
        if b.internal:
            fwd.append(f"iifname {_q(b.bridge)} oifname != {_q(b.bridge)} drop")
        else:
            post.append(f"ip saddr {b.subnet} oifname != {_q(b.bridge)} masquerade")
            if others:
                fwd.append(f"iifname {_q(b.bridge)} oifname {{ {', '.join(others)} }} drop")
        fwd.append(f"oifname {_q(b.bridge)} iifname != {_q(b.bridge)} drop")

    def chain(name: str, hook: str, rules: list[str]) -> str:
        return f"  chain {name} {{\n    {hook}\n" + "".join(f"    {r}\n" for r in rules) + "  }\n"

    return (
        head
        + f"table ip {table} {{\n"
        + map_def("ports_any", "inet_proto . inet_service", any_elems)
        + map_def("ports_ip", "ipv4_addr . inet_proto . inet_service", ip_elems)
        + chain(
            "ports",
            "",
            [
                "dnat to ip daddr . meta l4proto . th dport map @ports_ip",
                "dnat to meta l4proto . th dport map @ports_any",
            ],
        )
        + chain(
            "prerouting",
            "type nat hook prerouting priority dstnat; policy accept;",
            ["fib daddr type local jump ports"],
        )
        + chain(
            "output",
            "type nat hook output priority -100; policy accept;",
            ["fib daddr type local jump ports"],
        )
        + chain("postrouting", "type nat hook postrouting priority srcnat; policy accept;", post)
        + chain("forward", "type filter hook forward priority filter; policy accept;", fwd)
        + "}\n"
    )


def _forward_drops(iptables: str) -> bool:
    """Whether the iptables filter FORWARD chain drops by default (Docker's doing)."""
    out = _run([iptables, "-w", "-S", "FORWARD"], check=False)
    return "-P FORWARD DROP" in out


def _iptables_chain_rules(bridges: list[BridgeRules]) -> list[str]:
    rules = []
    for b in bridges:
        rules += [f"-i {b.bridge} -j ACCEPT", f"-o {b.bridge} -j ACCEPT"]
    return rules


def _sync_iptables_accept(cfg: NetConfig, bridges: list[BridgeRules]) -> None:
    iptables = shutil.which("iptables")
    if not iptables:
        return
    chain = f"{cfg.iptables_prefix}-FORWARD"
    exists = subprocess.run([iptables, "-w", "-S", chain], capture_output=True).returncode == 0
    if not bridges or not _forward_drops(iptables):
        if exists:
            _remove_iptables_chains(iptables, "filter", {chain: "FORWARD"})
        return
    restore = ["*filter", f":{chain} - [0:0]"]
    restore += [f"-A {chain} {r}" for r in _iptables_chain_rules(bridges)]
    _run([f"{iptables}-restore", "-w", "--noflush"], "\n".join(restore + ["COMMIT", ""]))
    _ensure_jump(iptables, "filter", "FORWARD", chain)


def _ensure_jump(iptables: str, table: str, builtin: str, chain: str) -> None:
    base = [iptables, "-w", "-t", table]
    if subprocess.run([*base, "-C", builtin, "-j", chain], capture_output=True).returncode:
        _run([*base, "-I", builtin, "1", "-j", chain])


def _remove_iptables_chains(iptables: str, table: str, chains: dict[str, str]) -> None:
    base = [iptables, "-w", "-t", table]
    chains = {
        c: b
        for c, b in chains.items()
        if not subprocess.run([*base, "-S", c], capture_output=True).returncode
    }
    for chain, builtin in chains.items():
        if builtin:
            while not subprocess.run(
                [*base, "-D", builtin, "-j", chain], capture_output=True
            ).returncode:
                pass
    for chain in chains:
        subprocess.run([*base, "-F", chain], capture_output=True)
    for chain in chains:
        subprocess.run([*base, "-X", chain], capture_output=True)


def _iptables_full(cfg: NetConfig, bridges: list[BridgeRules], ports: list[PortRule]) -> None:
    """The same rules with iptables only, for hosts without nft."""
    iptables = shutil.which("iptables")
    if not iptables:
        raise NetworkError("neither nft nor iptables is installed: apt-get install nftables")
    p = cfg.iptables_prefix
    nat = {f"{p}-PREROUTING": "PREROUTING", f"{p}-OUTPUT": "OUTPUT"}
    nat |= {f"{p}-POSTROUTING": "POSTROUTING", f"{p}-DNAT": ""}
    flt = {f"{p}-FORWARD": "FORWARD"}
    if not bridges:
        _remove_iptables_chains(iptables, "nat", nat)
        _remove_iptables_chains(iptables, "filter", flt)
        return
    n = ["*nat"] + [f":{c} - [0:0]" for c in nat]
    for c in (f"{p}-PREROUTING", f"{p}-OUTPUT"):
        n.append(f"-A {c} -m addrtype --dst-type LOCAL -j {p}-DNAT")
    for r in ports:
        dest = f"-d {r.host_ip} " if r.host_ip and r.host_ip != "0.0.0.0" else ""
        n.append(
            f"-A {p}-DNAT {dest}-p {r.protocol} -m {r.protocol} --dport {r.host_port} "
            f"-j DNAT --to-destination {r.container_ip}:{r.container_port}"
        )
    f = ["*filter", f":{p}-FORWARD - [0:0]"]
    fw = f"-A {p}-FORWARD"
    f.append(f"{fw} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    for b in bridges:
        n.append(
            f"-A {p}-POSTROUTING -s {b.subnet} -o {b.bridge} -m conntrack --ctstate DNAT -j MASQUERADE"
        )
        n.append(f"-A {p}-POSTROUTING -s 127.0.0.0/8 -o {b.bridge} -j MASQUERADE")
        f.append(f"{fw} -o {b.bridge} -m conntrack --ctstate DNAT -j ACCEPT")
    for b in bridges:
        if b.internal:
            f.append(f"{fw} -i {b.bridge} ! -o {b.bridge} -j DROP")
        else:
            n.append(f"-A {p}-POSTROUTING -s {b.subnet} ! -o {b.bridge} -j MASQUERADE")
            f += [f"{fw} -i {b.bridge} -o {o.bridge} -j DROP" for o in bridges if o is not b]
        f.append(f"{fw} -o {b.bridge} ! -i {b.bridge} -j DROP")
    f += [f"{fw} {r}" for r in _iptables_chain_rules(bridges)]
    restore = "\n".join(n + ["COMMIT"] + f + ["COMMIT", ""])
    _run([f"{iptables}-restore", "-w", "--noflush"], restore)
    for chain, builtin in (nat | flt).items():
        if builtin:
            _ensure_jump(iptables, "filter" if builtin == "FORWARD" else "nat", builtin, chain)


def apply(
    cfg: NetConfig, bridges: list[BridgeRules], ports: list[PortRule], cache: Path | None = None
) -> None:
    """Make the kernel's rules for this store match ``bridges`` and ``ports``.

    ``cache`` holds the last ruleset applied: an identical one is not sent again (most
    container starts change no rule), which saves an nft run per start and stop.
    """
    if cfg.firewall == "iptables":
        _iptables_full(cfg, bridges, ports)
        return
    script = nft_script(cfg.table, bridges, ports)
    try:
        unchanged = cache is not None and cache.read_text() == script
    except OSError:
        unchanged = False
    if not unchanged:
        if cache is not None:
            cache.unlink(missing_ok=True)
        _run(["nft", "-f", "-"], script)
        if cache is not None:
            tmp = cache.with_name(cache.name + ".tmp")
            tmp.write_text(script)
            tmp.replace(cache)
    _sync_iptables_accept(cfg, bridges)
