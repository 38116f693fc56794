"""A minimal rtnetlink client: the link, address and route requests a container needs.

Why not ``ip``: a process per step costs ~2 ms, and a container start took several;
pyroute2's import alone costs more than the whole start budget. The requests are a
handful of fixed structs (rtnetlink(7)), packed here with ``struct``.

A NETLINK_ROUTE socket acts on the network namespace it was *created* in, whatever
namespace its user is in later: that is how kernel.py configures a container's side
without entering the namespace (a worker thread creates the socket there). Every
request asks for an acknowledgement (NLM_F_ACK), so a failure is reported by the step
that caused it, with the errno text and the kernel's own message when it gives one.
"""

from __future__ import annotations

import _socket as socket  # the C module: the socket module's import costs ~2 ms
import errno
import os
import struct

from dockyard.errors import DockyardError

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # errors echo only the request's header, not its body
NETLINK_EXT_ACK = 11  # errors carry the kernel's message

NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_DUMP = 0x300
NLM_F_CAPPED = 0x100  # in an error message: the request was not echoed in full
NLM_F_ACK_TLVS = 0x200  # in an error message: attributes follow
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSGERR_ATTR_MSG = 1

RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_GETADDR = 22
RTM_NEWROUTE = 24
RTM_GETROUTE = 26

IFF_UP = 0x1
LOOPBACK_INDEX = 1  # lo is always interface 1 of a namespace

IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_MASTER = 10
IFLA_LINKINFO = 18
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
IFLA_INFO_SLAVE_KIND = 4
IFLA_INFO_SLAVE_DATA = 5
VETH_INFO_PEER = 1
IFLA_BRPORT_MODE = 4  # hairpin mode of a bridge port

IFA_ADDRESS = 1
IFA_LOCAL = 2

RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3  # what `ip route add` uses
RT_SCOPE_UNIVERSE = 0
RTN_UNICAST = 1

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst/src len, tos, table, proto, scope, type
_ATTR = struct.Struct("=HH")  # nlattr: len, type
_ERROR = struct.Struct("=i")
_U32 = struct.Struct("=I")


class NetworkError(DockyardError):
    """A kernel networking step failed."""


class NetlinkError(NetworkError):
    """A request the kernel refused; ``errno`` says why (ENODEV, EEXIST, ...)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.errno = code


# -- packing -------------------------------------------------------------------------------


def _attr(kind: int, payload: bytes) -> bytes:
    size = _ATTR.size + len(payload)
    return _ATTR.pack(size, kind) + payload + b"\0" * (-size % 4)


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, _U32.pack(value))


def _str(kind: int, value: str) -> bytes:
    return _attr(kind, value.encode() + b"\0")


def _nest(kind: int, *parts: bytes) -> bytes:
    return _attr(kind, b"".join(parts))


def _ifinfo(index: int = 0, up: bool | None = None) -> bytes:
    flags = IFF_UP if up else 0
    change = IFF_UP if up is not None else 0
    return _IFINFO.pack(socket.AF_UNSPEC, 0, index, flags, change)


def mac_bytes(mac: str) -> bytes:
    raw = bytes.fromhex(mac.replace(":", ""))
    if len(raw) != 6:
        raise NetworkError(f"invalid MAC address {mac}")
    return raw


def _ipv4(address: str) -> bytes:
    try:
        return socket.inet_aton(address)
    except OSError as err:
        raise NetworkError(f"invalid IPv4 address {address}") from err


def parse_attrs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """The attributes from ``offset`` on (the last one of a type wins); nested ones unparsed."""
    attrs: dict[int, bytes] = {}
    while offset + _ATTR.size <= len(data):
        size, kind = _ATTR.unpack_from(data, offset)
        if size < _ATTR.size:
            break
        attrs[kind & 0x3FFF] = data[offset + _ATTR.size : offset + size]
        offset += (size + 3) & ~3
    return attrs


# -- the socket ----------------------------------------------------------------------------


class Netlink:
    """A NETLINK_ROUTE socket, bound to the namespace of the thread that made it."""

    def __init__(self) -> None:
        sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE
        )
        for option in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
            try:
                sock.setsockopt(SOL_NETLINK, option, 1)
            except OSError:
                pass  # older kernels: plainer error messages
        sock.bind((0, 0))
        self._sock = sock
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, kind: int, flags: int, body: bytes, what: str) -> list[tuple[int, bytes]]:
        """Send one message and collect the replies up to its ACK (or a dump's end).

        Returns (type, payload) pairs; a refusal raises NetlinkError("<what>: <reason>").
        """
        self._seq += 1
        seq = self._seq
        dump = flags & NLM_F_DUMP == NLM_F_DUMP
        if not dump:
            flags |= NLM_F_ACK
        message = _HEADER.pack(_HEADER.size + len(body), kind, flags | NLM_F_REQUEST, seq, 0)
        self._sock.send(message + body)
        replies: list[tuple[int, bytes]] = []
        while True:
            data = self._sock.recv(1 << 16)
            offset = 0
            while offset + _HEADER.size <= len(data):
                size, mtype, mflags, mseq, _ = _HEADER.unpack_from(data, offset)
                if size < _HEADER.size:
                    break
                payload = data[offset + _HEADER.size : offset + size]
                offset += (size + 3) & ~3
                if mseq != seq:
                    continue  # a late answer to an earlier request
                if mtype == NLMSG_ERROR:
                    (code,) = _ERROR.unpack_from(payload)
                    if code:
                        raise _error(what, -code, mflags, payload)
                    return replies
                if mtype == NLMSG_DONE:
                    return replies
                replies.append((mtype, payload))

    # -- links ---------------------------------------------------------------------------

    def link_index(self, name: str) -> int | None:
        """The index of interface ``name`` in this socket's namespace (None: no such link)."""
        try:
            replies = self.request(
                RTM_GETLINK, 0, _ifinfo() + _str(IFLA_IFNAME, name), f"cannot look up {name}"
            )
        except NetlinkError as err:
            if err.errno == errno.ENODEV:
                return None
            raise
        for mtype, payload in replies:
            if mtype == RTM_NEWLINK:
                return int(_IFINFO.unpack_from(payload)[2])
        return None

    def add_veth(
        self,
        name: str,
        peer: str,
        *,
        peer_netns_fd: int | None = None,
        mtu: int | None = None,
        master: int | None = None,
        peer_mac: str | None = None,
        up: bool = True,
    ) -> None:
        """A veth pair in one request: ``name`` here (in bridge ``master``, up unless ``up``
        is False), ``peer`` in the namespace of ``peer_netns_fd``, down: the kernel refuses
        to bring the peer up before the pair is complete (ENOTCONN)."""
        peer_attrs = [_str(IFLA_IFNAME, peer)]
        if mtu is not None:
            peer_attrs.append(_u32(IFLA_MTU, mtu))
        if peer_mac:
            peer_attrs.append(_attr(IFLA_ADDRESS, mac_bytes(peer_mac)))
        if peer_netns_fd is not None:
            peer_attrs.append(_u32(IFLA_NET_NS_FD, peer_netns_fd))
        attrs = [
            _str(IFLA_IFNAME, name),
            _nest(
                IFLA_LINKINFO,
                _str(IFLA_INFO_KIND, "veth"),
                _nest(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, _ifinfo() + b"".join(peer_attrs))),
            ),
        ]
        if mtu is not None:
            attrs.append(_u32(IFLA_MTU, mtu))
        if master is not None:
            attrs.append(_u32(IFLA_MASTER, master))
        self.request(
            RTM_NEWLINK,
            NLM_F_CREATE | NLM_F_EXCL,
            _ifinfo(up=up) + b"".join(attrs),
            f"cannot create veth pair {name}/{peer}",
        )

    def add_bridge(self, name: str, *, mac: str | None = None, mtu: int | None = None) -> None:
        """A bridge, down: set it up with ``set_link`` once it is configured."""
        attrs = [_str(IFLA_IFNAME, name), _nest(IFLA_LINKINFO, _str(IFLA_INFO_KIND, "bridge"))]
        if mac:
            attrs.append(_attr(IFLA_ADDRESS, mac_bytes(mac)))
        if mtu is not None:
            attrs.append(_u32(IFLA_MTU, mtu))
        self.request(
            RTM_NEWLINK,
            NLM_F_CREATE | NLM_F_EXCL,
            _ifinfo() + b"".join(attrs),
            f"cannot create bridge {name}",
        )

    def set_link(
        self,
        link: str | int,
        *,
        up: bool | None = None,
        mtu: int | None = None,
        mac: str | None = None,
        master: int | None = None,
    ) -> None:
        """Change a link (by name or index): state, MTU, MAC address, bridge (0: none)."""
        index, attrs = (link, []) if isinstance(link, int) else (0, [_str(IFLA_IFNAME, link)])
        if mtu is not None:
            attrs.append(_u32(IFLA_MTU, mtu))
        if mac:
            attrs.append(_attr(IFLA_ADDRESS, mac_bytes(mac)))
        if master is not None:
            attrs.append(_u32(IFLA_MASTER, master))
        self.request(
            RTM_NEWLINK, 0, _ifinfo(index, up) + b"".join(attrs), f"cannot configure {link}"
        )

    def set_hairpin(self, link: str | int, on: bool = True) -> None:
        """Hairpin mode of a bridge port: frames may leave by the port they came in by."""
        index, attrs = (link, []) if isinstance(link, int) else (0, [_str(IFLA_IFNAME, link)])
        attrs.append(
            _nest(
                IFLA_LINKINFO,
                _str(IFLA_INFO_SLAVE_KIND, "bridge"),
                _nest(IFLA_INFO_SLAVE_DATA, _attr(IFLA_BRPORT_MODE, bytes([int(on)]))),
            )
        )
        self.request(
            RTM_NEWLINK, 0, _ifinfo(index) + b"".join(attrs), f"cannot set hairpin mode on {link}"
        )

    def delete_link(self, link: str | int) -> bool:
        """Delete a link (a veth's peer goes with it); False when there was none."""
        index, attrs = (link, b"") if isinstance(link, int) else (0, _str(IFLA_IFNAME, link))
        try:
            self.request(RTM_DELLINK, 0, _ifinfo(index) + attrs, f"cannot delete {link}")
        except NetlinkError as err:
            if err.errno == errno.ENODEV:
                return False
            raise
        return True

    # -- addresses and routes ------------------------------------------------------------

    def add_address(self, index: int, address: str, prefixlen: int, replace: bool = False) -> None:
        """An IPv4 address on interface ``index`` (``replace``: no error when it exists)."""
        raw = _ipv4(address)
        flags = NLM_F_CREATE | (NLM_F_REPLACE if replace else NLM_F_EXCL)
        body = _IFADDR.pack(socket.AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE, index)
        body += _attr(IFA_LOCAL, raw) + _attr(IFA_ADDRESS, raw)
        self.request(RTM_NEWADDR, flags, body, f"cannot add address {address}/{prefixlen}")

    def add_default_route(self, gateway: str, index: int) -> None:
        """The IPv4 default route via ``gateway`` out of ``index`` (replacing any)."""
        body = _RTMSG.pack(
            socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0
        )
        body += _attr(RTA_GATEWAY, _ipv4(gateway)) + _u32(RTA_OIF, index)
        self.request(
            RTM_NEWROUTE,
            NLM_F_CREATE | NLM_F_REPLACE,
            body,
            f"cannot add default route via {gateway}",
        )

    def ipv4_routes(self) -> list[tuple[str, int, int]]:
        """Every IPv4 route of every table: (destination, prefix length, output index or 0)."""
        body = _RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
        routes = []
        for mtype, payload in self.request(RTM_GETROUTE, NLM_F_DUMP, body, "cannot list routes"):
            if mtype != RTM_NEWROUTE:
                continue
            family, dst_len = payload[0], payload[1]
            if family != socket.AF_INET:
                continue
            attrs = parse_attrs(payload, _RTMSG.size)
            dst = socket.inet_ntoa(attrs[RTA_DST]) if RTA_DST in attrs else "0.0.0.0"
            oif = _U32.unpack(attrs[RTA_OIF])[0] if RTA_OIF in attrs else 0
            routes.append((dst, dst_len, oif))
        return routes

    def ipv4_addresses(self) -> list[tuple[str, int, int]]:
        """Every IPv4 address: (address, prefix length, interface index)."""
        body = _IFADDR.pack(socket.AF_INET, 0, 0, 0, 0)
        found = []
        for mtype, payload in self.request(RTM_GETADDR, NLM_F_DUMP, body, "cannot list addresses"):
            if mtype != RTM_NEWADDR:
                continue
            family, prefixlen, _, _, index = _IFADDR.unpack_from(payload)
            attrs = parse_attrs(payload, _IFADDR.size)
            raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
            if family == socket.AF_INET and raw:
                found.append((socket.inet_ntoa(raw), prefixlen, index))
        return found


def _error(what: str, code: int, flags: int, payload: bytes) -> NetlinkError:
    """The NetlinkError of an NLMSG_ERROR payload, with the kernel's message if any."""
    reason = os.strerror(code)
    if flags & NLM_F_ACK_TLVS:
        offset = _ERROR.size + _HEADER.size
        if not flags & NLM_F_CAPPED and len(payload) >= offset:
            (echoed,) = _U32.unpack_from(payload, _ERROR.size)
            offset = _ERROR.size + ((echoed + 3) & ~3)
        text = parse_attrs(payload, offset).get(NLMSGERR_ATTR_MSG, b"")
        message = text.rstrip(b"\0").decode(errors="replace")
        if message:
            reason += f" ({message})"
    return NetlinkError(f"{what}: {reason}", code)
