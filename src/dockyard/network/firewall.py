"""NAT and filter rules, regenerated as a whole from the store's state.

Every change (a network created or removed, a container started or stopped)
rewrites this store's rules in one atomic nft transaction from the database: the
table's chains and maps are emptied and refilled (or the table is created afresh,
or deleted when nothing is left to route), so a crashed command leaves no
half-state that the next sync does not fix.

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

What was applied is cached in files under RUNROOT (see ``apply``): a container
start or stop that changes no rule runs no process.
"""

from __future__ import annotations

import os
from pathlib import Path

from dockyard.fsutil import which
from dockyard.network.config import NetConfig
from dockyard.network.kernel import NetworkError
from dockyard.records import record


@record
class BridgeRules:
    bridge: str
    subnet: str
    internal: bool


@record
class PortRule:
    protocol: str
    host_ip: str  # "" for every host address
    host_port: int
    container_ip: str
    container_port: int


def _run(argv: list[str], stdin: str | None = None, check: bool = True) -> str:
    import subprocess

    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise NetworkError(f"{argv[0]} failed: {proc.stderr.strip()}")
    return proc.stdout


def _status(argv: list[str]) -> int:
    import subprocess

    return subprocess.run(argv, capture_output=True).returncode


def _q(name: str) -> str:
    return f'"{name}"'


def _reset(table: str) -> str:
    """Deletes the table (whether it exists or not): what follows starts afresh."""
    return f"table ip {table} {{}}\ndelete table ip {table}\n"


def _flush(table: str) -> str:
    """Empties the table's chains and maps but keeps them, for a table that nft_table
    made: no base chain is unhooked and hooked again, which takes the kernel longer."""
    lines = [f"flush table ip {table}\n"]  # the rules, not the maps' elements
    return "".join(lines + [f"flush map ip {table} {name}\n" for name in MAPS])


MAPS = ("ports_any", "ports_ip")  # the maps nft_table defines


def nft_table(table: str, bridges: list[BridgeRules], ports: list[PortRule]) -> str:
    """The table's definition ("" when there is nothing to route)."""
    if not bridges:
        return ""
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
        f"table ip {table} {{\n"
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


OPEN = "open\n"  # the accept chain's cached state when FORWARD accepts anyway


def _accept_state(bridges: list[BridgeRules]) -> str:
    return "accept\n" + "".join(f"{b.bridge}\n" for b in bridges)


def _sync_iptables_accept(cfg: NetConfig, bridges: list[BridgeRules]) -> str:
    """Make the accept chain match; the state reached: OPEN when FORWARD does not drop
    (no chain, whatever the bridges), else ``_accept_state`` of what the chain lets by."""
    iptables = which("iptables")
    if not iptables:
        return OPEN
    chain = f"{cfg.iptables_prefix}-FORWARD"
    drops = _forward_drops(iptables)
    if not bridges or not drops:
        if _status([iptables, "-w", "-S", chain]) == 0:
            _remove_iptables_chains(iptables, "filter", {chain: "FORWARD"})
        return _accept_state([]) if drops else OPEN
    restore = ["*filter", f":{chain} - [0:0]"]
    restore += [f"-A {chain} {r}" for r in _iptables_chain_rules(bridges)]
    _run([f"{iptables}-restore", "-w", "--noflush"], "\n".join(restore + ["COMMIT", ""]))
    _ensure_jump(iptables, "filter", "FORWARD", chain)
    return _accept_state(bridges)


def _ensure_jump(iptables: str, table: str, builtin: str, chain: str) -> None:
    base = [iptables, "-w", "-t", table]
    if _status([*base, "-C", builtin, "-j", chain]):
        _run([*base, "-I", builtin, "1", "-j", chain])


def _remove_iptables_chains(iptables: str, table: str, chains: dict[str, str]) -> None:
    base = [iptables, "-w", "-t", table]
    chains = {c: b for c, b in chains.items() if _status([*base, "-S", c]) == 0}
    for chain, builtin in chains.items():
        if builtin:
            while _status([*base, "-D", builtin, "-j", chain]) == 0:
                pass
    for chain in chains:
        _status([*base, "-F", chain])
    for chain in chains:
        _status([*base, "-X", chain])


def _iptables_full(cfg: NetConfig, bridges: list[BridgeRules], ports: list[PortRule]) -> None:
    """The same rules with iptables only, for hosts without nft."""
    iptables = which("iptables")
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


def _cached(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text()
    except OSError:
        return None


def _remember(path: Path | None, text: str) -> None:
    if path is not None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)


def _accept_cache(cache: Path | None) -> Path | None:
    return cache.with_name(cache.name + ".accept") if cache is not None else None


def forget_cache(cache: Path) -> None:
    """Make the next ``apply`` rewrite and re-check everything (rules edited by hand,
    a crash, a new network)."""
    for path in (cache, _accept_cache(cache)):
        if path is not None:
            path.unlink(missing_ok=True)


class _Libnftables:
    """nft's own library, loaded into this process.

    Why not the ``nft`` command: besides the process, nft closes its netlink socket
    on exit, and the kernel makes that close wait until the replaced rules are retired
    (an RCU grace period, ~20 ms here). In-process the commit returns as soon as the
    rules are live (~1 ms); the socket stays open until this process ends, whose exit
    waits only if that clean-up is still pending then.
    """

    def __init__(self) -> None:
        import ctypes

        lib = ctypes.CDLL("libnftables.so.1")
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        before = _sockets()
        ctx = lib.nft_ctx_new(0)
        if not ctx:
            raise OSError("nft_ctx_new failed")
        for fd in _sockets() - before:  # the library's netlink socket is inheritable
            os.set_inheritable(fd, False)
        # messages go to buffers, not to our stdout/stderr
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        self._lib, self._ctx = lib, ctx

    def run(self, script: str) -> str | None:
        """Apply ``script`` atomically; the error text when nft refused it."""
        if self._lib.nft_run_cmd_from_buffer(self._ctx, script.encode()) == 0:
            return None
        raw = self._lib.nft_ctx_get_error_buffer(self._ctx) or b""
        return bytes(raw).decode(errors="replace").strip() or "nft refused the ruleset"


def _sockets() -> set[int]:
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                found.add(int(name))
        except OSError:
            pass
    return found


_libnftables: list[_Libnftables | None] = []  # loaded once; None: use the nft command


def _library() -> _Libnftables | None:
    if not _libnftables:
        try:
            _libnftables.append(_Libnftables())
        except (OSError, AttributeError):
            _libnftables.append(None)
    return _libnftables[0]


def _nft(script: str) -> None:
    """Apply ``script`` atomically, by nft's library if it loads, else by the command."""
    library = _library()
    if library is None:
        _run(["nft", "-f", "-"], script)
        return
    error = library.run(script)
    if error is not None:
        raise NetworkError(f"nft failed: {error}")


def apply(
    cfg: NetConfig,
    bridges: list[BridgeRules],
    ports: list[PortRule],
    cache: Path | None = None,
) -> None:
    """Make the kernel's rules for this store match ``bridges`` and ``ports``.

    ``cache`` (a file under RUNROOT, which a reboot empties) holds the table applied
    last, and ``<cache>.accept`` the state of the iptables accept chain once checked.
    What is unchanged is not sent again: most container starts and stops change no
    rule and run no process; a published port costs one nft transaction. The FORWARD
    policy is read again only when the cache is forgotten (``forget_cache``).
    """
    if cfg.firewall == "iptables":
        wanted = f"iptables\n{bridges!r}\n{ports!r}\n"
        if _cached(cache) != wanted:
            if cache is not None:
                cache.unlink(missing_ok=True)
            _iptables_full(cfg, bridges, ports)
            _remember(cache, wanted)
        return
    table = nft_table(cfg.table, bridges, ports)
    applied = _cached(cache)
    if applied != table:
        if cache is not None:
            cache.unlink(missing_ok=True)  # unknown state until nft succeeded
        if applied and table:  # the kernel holds a table that nft_table made: refill it
            try:
                _nft(_flush(cfg.table) + table)
            except NetworkError:
                applied = None  # edited by hand? start afresh
        if not (applied and table):
            _nft(_reset(cfg.table) + table)
        _remember(cache, table)
    accept_cache = _accept_cache(cache)
    state = _cached(accept_cache)
    if state != OPEN and state != _accept_state(bridges):
        if accept_cache is not None:
            accept_cache.unlink(missing_ok=True)
        _remember(accept_cache, _sync_iptables_accept(cfg, bridges))
