"""Docker's embedded DNS server: 127.0.0.11:53 (UDP and TCP) inside each container's network
namespace, served by dockyardd's own asyncio loop. As in dockerd, the sockets listen on free
ports and a small nft table inside the container's namespace redirects port 53 to them.

The listening sockets are made inside the container's netns by a short-lived thread (a socket keeps
the namespace it was created in), then handed to the loop; so one process serves every container
without a helper process per container. Like dockerd's resolver, it answers the names the engine
knows (A with TTL 600; AAAA and other types of those names: NOERROR with no answers, so clients do
not leak container names upstream), PTR for the engine's addresses, and forwards everything else
unchanged (same id, same protocol as the client used) to the container's upstream nameservers. The
forwarding sockets are the daemon's own, in the host netns, so the host's resolvers (127.0.0.53
included) are reachable whatever the container's network. No upstream, or none answering: SERVFAIL.

Everything arriving here is untrusted: a message that does not parse gets FORMERR (or nothing),
forwarded queries are capped per container and overall, TCP clients are capped and timed out, and
every task is tracked so stop() leaves nothing running.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
from typing import Callable

from dockyard.errors import SystemFailure

from dockyard.linux import libnftables

from . import dns, netns

log = logging.getLogger(__name__)

ADDRESS = "127.0.0.11"
PORT = 53
REDIRECT_TABLE = "dockyard_dns"  # inside each container's netns, never the host's
TTL = 600  # dockerd's respTTL
MAX_UPSTREAMS = 3  # dockerd tries at most three external servers
FORWARD_TIMEOUT = 2.0  # seconds per upstream
MAX_FORWARDS = 128  # concurrent forwarded queries per container
MAX_FORWARDS_TOTAL = 1024  # … and for the whole daemon (dockerd: 1024 per resolver)
MAX_TCP_CLIENTS = 32  # open TCP connections per container
TCP_TIMEOUT = 10.0  # seconds a TCP client may take to send a query once it started, or to read a reply

Lookup = Callable[[str, str], "list[str] | None"]
Reverse = Callable[[str, str], "str | None"]
Upstreams = Callable[[str], "list[str]"]


def parse_upstream(text: str) -> tuple[int, str, int]:
    """(family, address, port) of "1.2.3.4", "1.2.3.4:5353", "fe80::1" or "[fe80::1]:5353"."""
    host, port = text.strip(), PORT
    if host.startswith("["):
        inner, sep, rest = host[1:].partition("]")
        if not sep or rest and not rest.startswith(":"):
            raise ValueError(f"bad nameserver {text!r}")
        host, port = inner, int(rest[1:]) if rest else PORT
    elif host.count(":") == 1:
        host, _, p = host.partition(":")
        port = int(p)
    ip = ipaddress.ip_address(host.split("%", 1)[0])  # ValueError on garbage
    if not 0 < port < 65536:
        raise ValueError(f"bad port in nameserver {text!r}")
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    return family, host, port


def _open_sockets(address: str, port: int, redirect: bool) -> tuple[socket.socket, socket.socket]:
    """UDP and TCP sockets listening for address:port in the calling thread's netns.

    `redirect`: as dockerd does, the sockets take free ports and a table of ours in that netns
    sends address:port to them, so port 53 stays free for the container's own DNS server
    (a dnsmasq or coredns binding 0.0.0.0:53 on a user-defined network)."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        udp.bind((address, 0 if redirect else port))
        # Re-serving a restarted container must not wait for TIME_WAIT connections of the last one.
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((address, 0 if redirect else port))
        tcp.listen(64)
        udp.setblocking(False)
        tcp.setblocking(False)
        if redirect:
            try:
                libnftables.run(_redirect_table(address, port, udp.getsockname()[1], tcp.getsockname()[1]))
            except libnftables.NftError as e:
                raise OSError(0, f"redirecting port {port}: {e}") from None
    except OSError:
        udp.close()
        tcp.close()
        raise
    return udp, tcp


def _redirect_table(address: str, port: int, udp_port: int, tcp_port: int) -> str:
    """The container netns' table sending address:port to our ports. Replies are translated back
    by conntrack, which needs a nat chain on the reply's path (the empty postrouting one)."""
    return (f"table ip {REDIRECT_TABLE} {{}}\n"
            f"delete table ip {REDIRECT_TABLE}\n"
            f"table ip {REDIRECT_TABLE} {{\n"
            f"\tchain output {{\n"
            f"\t\ttype nat hook output priority -100; policy accept;\n"
            f"\t\tip daddr {address} udp dport {port} dnat to {address}:{udp_port}\n"
            f"\t\tip daddr {address} tcp dport {port} dnat to {address}:{tcp_port}\n"
            f"\t}}\n"
            f"\tchain postrouting {{\n"
            f"\t\ttype nat hook postrouting priority 100; policy accept;\n"
            f"\t}}\n"
            f"}}\n")


def _lookup_name(labels: tuple[bytes, ...]) -> str | None:
    """The name to ask the engine about: lowercased, no trailing dot; None when it cannot be one of
    ours (root, non-ASCII, dots inside a label)."""
    if not labels:
        return None
    try:
        parts = [label.decode("ascii") for label in labels]
    except UnicodeDecodeError:
        return None
    if any("." in p or not p.isprintable() for p in parts):
        return None
    return ".".join(parts).lower()


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: "_Server"):
        self.server = server
        # The transport closes its socket one loop iteration after close(): stop() waits for it
        # so that a new server may bind the port as soon as stop() returns.
        self.closed = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def datagram_received(self, data: bytes, addr) -> None:
        self.server.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP unreachable for a reply we sent
        log.debug("embedded DNS %s: %s", self.server.container_id[:12], exc)


class _Server:
    """One container's listener pair and the tasks serving it."""

    def __init__(self, resolver: "Resolver", container_id: str, netns_path: str):
        self.resolver = resolver
        self.container_id = container_id
        self.netns_path = netns_path
        self.udp: asyncio.DatagramTransport | None = None
        self.udp_protocol: _UDPProtocol | None = None
        self.tcp: asyncio.Server | None = None
        self.tasks: set[asyncio.Task] = set()
        self.forwards = 0
        self.tcp_clients = 0
        self.closing = False

    async def start(self, udp_sock: socket.socket, tcp_sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            self.udp, self.udp_protocol = await loop.create_datagram_endpoint(lambda: _UDPProtocol(self),
                                                                              sock=udp_sock)
            self.tcp = await asyncio.start_server(self.serve_tcp, sock=tcp_sock)
        except BaseException:
            await self.close()
            udp_sock.close()
            tcp_sock.close()
            raise

    async def close(self) -> None:
        # No new work first (both stop reading at once), then cancel what is running; a TCP
        # connection accepted just before is turned away by the `closing` check.
        self.closing = True
        if self.tcp is not None:
            self.tcp.close()
        if self.udp is not None:
            self.udp.close()
        tasks = list(self.tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.udp_protocol is not None:
            await self.udp_protocol.closed

    def _track(self, task: asyncio.Task) -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- UDP

    def on_datagram(self, data: bytes, addr) -> None:
        try:
            query = dns.parse(data)
        except dns.FormatError:
            self._send(dns.error_reply(data, dns.FORMERR), addr)
            return
        if query.is_response:
            return
        reply = self.resolver.answer(self.container_id, query, query.udp_size)
        if reply is not None:
            self._send(reply, addr)
            return
        if not self._take_forward_slot():
            self._send(dns.build_reply(query, dns.SERVFAIL), addr)
            return
        self._track(asyncio.get_running_loop().create_task(self._forward_udp(data, query, addr)))

    async def _forward_udp(self, data: bytes, query: dns.Message, addr) -> None:
        try:
            reply = await self.resolver.forward(self.container_id, data, query, tcp=False)
        except Exception:
            log.exception("embedded DNS %s: forwarding failed", self.container_id[:12])
            reply = dns.build_reply(query, dns.SERVFAIL)
        finally:
            self._release_forward_slot()
        self._send(reply, addr)

    def _send(self, reply: bytes | None, addr) -> None:
        if reply is not None and self.udp is not None and not self.udp.is_closing():
            self.udp.sendto(reply, addr)

    # -- TCP (RFC 1035 4.2.2: two-byte length, then the message; several queries per connection)

    async def serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._track(task)
        if self.closing or self.tcp_clients >= MAX_TCP_CLIENTS:
            writer.close()
            return
        self.tcp_clients += 1
        try:
            while True:
                try:
                    # Idle connections may wait for the next query only as long as one may take.
                    (length,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), TCP_TIMEOUT))
                    data = await asyncio.wait_for(reader.readexactly(length), TCP_TIMEOUT)
                except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                    return
                reply = await self._answer_tcp(data)
                if reply is None:
                    return
                writer.write(struct.pack("!H", len(reply)) + reply)
                await asyncio.wait_for(writer.drain(), TCP_TIMEOUT)
        except (asyncio.TimeoutError, ConnectionError):
            pass
        except asyncio.CancelledError:
            # Only close() cancels these tasks; ending normally keeps asyncio's stream callback
            # (3.11) from logging the cancellation as an error.
            pass
        except Exception:  # never let one client take the server down
            log.exception("embedded DNS %s: TCP client failed", self.container_id[:12])
        finally:
            self.tcp_clients -= 1
            writer.close()

    async def _answer_tcp(self, data: bytes) -> bytes | None:
        try:
            query = dns.parse(data)
        except dns.FormatError:
            return dns.error_reply(data, dns.FORMERR)
        if query.is_response:
            return None
        reply = self.resolver.answer(self.container_id, query, None)
        if reply is not None:
            return reply
        if not self._take_forward_slot():
            return dns.build_reply(query, dns.SERVFAIL)
        try:
            return await self.resolver.forward(self.container_id, data, query, tcp=True)
        finally:
            self._release_forward_slot()

    # -- forwarding caps

    def _take_forward_slot(self) -> bool:
        r = self.resolver
        if self.forwards >= MAX_FORWARDS or r.forwards >= MAX_FORWARDS_TOTAL:
            return False
        self.forwards += 1
        r.forwards += 1
        return True

    def _release_forward_slot(self) -> None:
        self.forwards -= 1
        self.resolver.forwards -= 1


class Resolver:
    """The embedded DNS servers of all containers, on the running event loop.

    lookup(container_id, name) → the IPv4 addresses of `name` as that container sees it, or None
        when the name is not the engine's (then it is forwarded). `name` is lowercased, without a
        trailing dot; compare case-insensitively.
    reverse(container_id, ip) → the name for a PTR query about `ip`, or None (forwarded).
    upstreams(container_id) → nameservers to forward to: "ip", "ip:port" or "[v6]:port" (the
        container's --dns, else the host's); an empty list answers SERVFAIL (internal networks).
    The callbacks run on the loop and must not block.
    """

    def __init__(self, lookup: Lookup, reverse: Reverse, upstreams: Upstreams, *,
                 address: str = ADDRESS, port: int = PORT, timeout: float = FORWARD_TIMEOUT,
                 redirect: bool = True):
        self.lookup = lookup
        self.reverse = reverse
        self.upstreams = upstreams
        self.address, self.port, self.timeout = address, port, timeout
        # Ports taken through a redirect when nft's library is here, else port 53 itself.
        self.redirect = redirect and libnftables.available()
        self.forwards = 0
        self._servers: dict[str, _Server] = {}
        self._lock = asyncio.Lock()

    async def serve(self, container_id: str, netns_path: str) -> None:
        """Listen in `netns_path` for this container (again after a restart in a new netns);
        SystemFailure when the sockets cannot be made there."""
        async with self._lock:
            current = self._servers.get(container_id)
            if current is not None:
                if current.netns_path == netns_path:
                    return
                del self._servers[container_id]
                await current.close()
            loop = asyncio.get_running_loop()
            try:
                udp, tcp = await loop.run_in_executor(
                    None, netns.run_in, netns_path, _open_sockets, self.address, self.port, self.redirect)
            except OSError as e:
                raise SystemFailure(f"embedded DNS server: cannot listen on {self.address}:{self.port} "
                                    f"in network namespace {netns_path}: {e.strerror or e}") from e
            server = _Server(self, container_id, netns_path)
            await server.start(udp, tcp)
            self._servers[container_id] = server

    async def stop(self, container_id: str) -> None:
        """Close the container's listeners and cancel its pending queries; unknown ids are fine."""
        async with self._lock:
            server = self._servers.pop(container_id, None)
            if server is not None:
                await server.close()

    async def close(self) -> None:
        async with self._lock:
            servers, self._servers = list(self._servers.values()), {}
            for server in servers:
                await server.close()

    def serving(self) -> dict[str, str]:
        """container id → netns path of every open server (for reconciliation and tests)."""
        return {cid: s.netns_path for cid, s in self._servers.items()}

    # -- answering

    def answer(self, container_id: str, query: dns.Message, udp_size: int | None) -> bytes | None:
        """Our reply to `query`, or None when it has to be forwarded."""
        if query.opcode != 0:
            return dns.build_reply(query, dns.NOTIMP)
        q = query.question
        if q is None:
            return dns.build_reply(query, dns.FORMERR)
        if q.qclass != dns.IN:
            return None
        try:
            if q.qtype == dns.PTR:
                ip = dns.ptr_address(q.labels)
                target = self.reverse(container_id, ip) if ip is not None else None
                if target is None:
                    return None
                return dns.build_reply(query, answers=[(dns.PTR, TTL, dns.ptr_rdata(target))], udp_size=udp_size)
            name = _lookup_name(q.labels)
            ips = self.lookup(container_id, name) if name is not None else None
            if ips is None:
                return None
            answers = []
            if q.qtype in (dns.A, dns.ANY):
                answers = [(dns.A, TTL, dns.a_rdata(ip)) for ip in ips]
            return dns.build_reply(query, answers=answers, udp_size=udp_size)
        except Exception:  # a backend bug must not kill the listener
            log.exception("embedded DNS %s: lookup of %s failed", container_id[:12], q.name)
            return dns.build_reply(query, dns.SERVFAIL)

    async def forward(self, container_id: str, data: bytes, query: dns.Message, *, tcp: bool) -> bytes:
        """The first usable upstream reply to `data` (relayed as is), else SERVFAIL.

        Like dockerd: SERVFAIL/REFUSED/other errors move on to the next server (the last such reply
        is relayed if nobody does better); a truncated UDP reply is relayed so the client retries
        over TCP."""
        try:
            servers = list(self.upstreams(container_id))
        except Exception:
            log.exception("embedded DNS %s: upstreams failed", container_id[:12])
            servers = []
        fallback = None
        tried = 0
        for text in servers:
            if tried == MAX_UPSTREAMS:
                break
            try:
                family, host, port = parse_upstream(text)
            except ValueError:
                log.warning("embedded DNS %s: ignoring nameserver %r", container_id[:12], text)
                continue
            tried += 1
            exchange = self._exchange_tcp if tcp else self._exchange_udp
            try:
                reply = await asyncio.wait_for(exchange(family, host, port, data, query.id), self.timeout)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                log.debug("embedded DNS %s: %s:%d: %r", container_id[:12], host, port, e)
                continue
            if reply[3] & dns.RCODE_MASK in (dns.NOERROR, dns.NXDOMAIN):
                return reply
            fallback = reply
        return fallback if fallback is not None else dns.build_reply(query, dns.SERVFAIL)

    @staticmethod
    async def _exchange_udp(family: int, host: str, port: int, data: bytes, ident: int) -> bytes:
        loop = asyncio.get_running_loop()
        # A fresh connected socket per query: a random source port, and the kernel drops datagrams
        # from anyone but the upstream.
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.setblocking(False)
            s.connect((host, port))
            await loop.sock_sendall(s, data)
            while True:
                reply = await loop.sock_recv(s, 65535)
                if _is_reply_to(reply, ident):
                    return reply

    @staticmethod
    async def _exchange_tcp(family: int, host: str, port: int, data: bytes, ident: int) -> bytes:
        reader, writer = await asyncio.open_connection(host, port, family=family)
        try:
            writer.write(struct.pack("!H", len(data)) + data)
            await writer.drain()
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            reply = await reader.readexactly(length)
            if not _is_reply_to(reply, ident):
                raise ConnectionError("upstream sent something that is not the reply")
            return reply
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _is_reply_to(reply: bytes, ident: int) -> bool:
    return len(reply) >= dns.HEADER.size and struct.unpack_from("!H", reply)[0] == ident \
        and bool(reply[2] & 0x80)
