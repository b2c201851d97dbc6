"""network/resolver.py: the embedded DNS server, served inside a test netns by this test's asyncio
loop and asked by busybox nslookup and by python sockets made in that netns; names it does not
know go to a fake upstream nameserver the test runs on 127.0.0.1 (host netns)."""

import asyncio
import contextlib
import os
import socket
import struct
import subprocess

import pytest

from dockyard.errors import SystemFailure
from dockyard.network import dns, netlink, netns, resolver
from dockyard.network.resolver import Resolver, parse_upstream

root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")

NAMES = {"web": ["10.9.0.2"], "web.mynet": ["10.9.0.2"], "db": ["10.9.0.3", "10.9.0.4"], "quiet": []}
PTRS = {"10.9.0.2": "web.mynet"}
CID = "c" * 64


def run(coro):
    return asyncio.run(coro)


# -- pure parts


@pytest.mark.parametrize("text, want", [
    ("1.2.3.4", (socket.AF_INET, "1.2.3.4", 53)),
    ("127.0.0.1:5353", (socket.AF_INET, "127.0.0.1", 5353)),
    ("fe80::1", (socket.AF_INET6, "fe80::1", 53)),
    ("[::1]:5353", (socket.AF_INET6, "::1", 5353)),
    ("[::1]", (socket.AF_INET6, "::1", 53)),
    (" 8.8.8.8 ", (socket.AF_INET, "8.8.8.8", 53)),
])
def test_parse_upstream(text, want):
    assert parse_upstream(text) == want


@pytest.mark.parametrize("text", ["", "example.com", "1.2.3.4:0", "1.2.3.4:70000", "[::1", "[::1]x", "1.2.3.4:x",
                                  "[nope]:53"])
def test_parse_upstream_rejects(text):
    with pytest.raises(ValueError):
        parse_upstream(text)


def make_resolver(upstreams=(), **kw) -> Resolver:
    asked = []

    def lookup(cid, name):
        asked.append((cid, name))
        return NAMES.get(name)

    r = Resolver(lookup, lambda cid, ip: PTRS.get(ip), lambda cid: list(upstreams), **kw)
    r.asked = asked
    return r


def ask(r, name, qtype=dns.A, udp_size=512):
    return r.answer(CID, dns.parse(dns.build_query(name, qtype, ident=42)), udp_size)


def test_answer_known_names():
    r = make_resolver()
    m = dns.parse(ask(r, "WEB.MyNet."))
    assert r.asked == [(CID, "web.mynet")]  # lowercased, no trailing dot
    assert m.id == 42 and m.rcode == dns.NOERROR and m.question.labels == (b"WEB", b"MyNet")
    assert [(a.rtype, a.ttl, a.rdata) for a in m.answers] == [(dns.A, 600, bytes([10, 9, 0, 2]))]
    assert len(dns.parse(ask(r, "db")).answers) == 2
    # Our names with other types: NOERROR and nothing (never forwarded).
    for qtype in (dns.AAAA, dns.MX, dns.TXT, dns.SRV):
        m = dns.parse(ask(r, "web", qtype))
        assert m.rcode == dns.NOERROR and m.answers == ()
    m = dns.parse(ask(r, "quiet"))
    assert m.rcode == dns.NOERROR and m.answers == ()


def test_answer_ptr_and_forward_decisions():
    r = make_resolver()
    m = dns.parse(ask(r, "2.0.9.10.in-addr.arpa", dns.PTR))
    assert m.answers[0].target == "web.mynet" and m.answers[0].ttl == 600
    assert ask(r, "9.0.9.10.in-addr.arpa", dns.PTR) is None  # not ours: forwarded
    assert ask(r, "1.0.0.0.ip6.arpa", dns.PTR) is None
    assert ask(r, "example.com") is None
    assert ask(r, ".") is None
    q = dns.parse(dns.build_query("web"))
    odd_class = dns.parse(dns.build_query("web")[:-2] + b"\x00\x03")  # CHAOS
    assert r.answer(CID, odd_class, 512) is None
    iquery = dns.parse(dns.HEADER.pack(1, 1 << 11, 1, 0, 0, 0) + dns.build_query("web")[12:])
    assert dns.parse(r.answer(CID, iquery, 512)).rcode == dns.NOTIMP
    two = dns.parse(dns.HEADER.pack(1, 0, 2, 0, 0, 0) + dns.build_query("web")[12:] * 2)
    assert dns.parse(r.answer(CID, two, 512)).rcode == dns.FORMERR
    assert q.question.name == "web"


def test_backend_errors_answer_servfail():
    def broken(cid, name):
        raise RuntimeError("backend bug")

    r = Resolver(broken, broken, lambda cid: [])
    assert dns.parse(r.answer(CID, dns.parse(dns.build_query("web")), 512)).rcode == dns.SERVFAIL


# -- served in a netns


@pytest.fixture
def ns(make_netns):
    """A test netns with lo up (tests/network/conftest.py deletes it and checks)."""
    path = make_netns()
    netlink.loopback_up(path)
    return path


class FakeUpstream:
    """A nameserver on 127.0.0.1 (UDP and TCP on one port) with a few canned behaviours."""

    def __init__(self):
        self.seen = []  # (proto, id, name)
        self.udp = self.tcp = None
        self.port = 0

    async def start(self):
        loop = asyncio.get_running_loop()
        for _ in range(20):
            self.tcp = await asyncio.start_server(self._tcp, "127.0.0.1", 0)
            self.port = self.tcp.sockets[0].getsockname()[1]
            try:
                self.udp, _ = await loop.create_datagram_endpoint(lambda: _Datagrams(self),
                                                                  local_addr=("127.0.0.1", self.port))
                return self
            except OSError:
                self.tcp.close()
        raise RuntimeError("no port free for both UDP and TCP")

    def close(self):
        self.udp.close()
        self.tcp.close()

    def respond(self, data: bytes, proto: str) -> bytes | None:
        m = dns.parse(data)
        name = m.question.name.lower()
        self.seen.append((proto, m.id, name))
        if name == "ext.example":
            return dns.build_reply(m, answers=[(dns.A, 30, dns.a_rdata("203.0.113.7"))])
        if name == "big.example":
            answers = [(dns.A, 30, dns.a_rdata(f"198.51.100.{i}")) for i in range(1, 101)]
            return dns.build_reply(m, answers=answers, udp_size=512 if proto == "udp" else None)
        if name == "fail.example":
            return dns.build_reply(m, dns.SERVFAIL)
        if name == "silent.example":
            return None
        return dns.build_reply(m, dns.NXDOMAIN)

    async def _tcp(self, reader, writer):
        try:
            (n,) = struct.unpack("!H", await reader.readexactly(2))
            reply = self.respond(await reader.readexactly(n), "tcp")
            if reply is not None:
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        finally:
            writer.close()


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, upstream):
        self.upstream = upstream

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        reply = self.upstream.respond(data, "udp")
        if reply is not None:
            self.transport.sendto(reply, addr)


@contextlib.asynccontextmanager
async def serving(path, upstreams=None, timeout=1.0):
    up = await FakeUpstream().start()
    servers = [f"127.0.0.1:{up.port}"] if upstreams is None else upstreams(up.port)
    r = make_resolver(servers, timeout=timeout)
    try:
        await r.serve(CID, path)
        yield r, up
    finally:
        await r.close()
        up.close()
    await asyncio.sleep(0)
    assert asyncio.all_tasks() == {asyncio.current_task()}, "tasks left behind"


def _udp_exchange(payloads: list[bytes], want: int, timeout: float) -> list[bytes]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        for p in payloads:
            s.sendto(p, (resolver.ADDRESS, resolver.PORT))
        out = []
        with contextlib.suppress(socket.timeout):
            while len(out) < want:
                out.append(s.recv(65535))
        return out


def _tcp_exchange(payload: bytes, timeout: float) -> bytes:
    with socket.create_connection((resolver.ADDRESS, resolver.PORT), timeout=timeout) as s:
        s.sendall(payload)
        data = b""
        while True:
            try:
                chunk = s.recv(65535)
            except ConnectionResetError:  # turned away with our query unread
                return data
            if not chunk:
                return data
            data += chunk
            if len(data) >= 2 and len(data) - 2 >= struct.unpack_from("!H", data)[0]:
                return data


async def udp(path, *payloads, want=None, timeout=3.0) -> list[bytes]:
    want = len(payloads) if want is None else want
    return await asyncio.to_thread(netns.run_in, path, _udp_exchange, list(payloads), want, timeout)


async def tcp(path, payload: bytes, timeout=3.0) -> bytes:
    return await asyncio.to_thread(netns.run_in, path, _tcp_exchange, payload, timeout)


def framed(q: bytes) -> bytes:
    return struct.pack("!H", len(q)) + q


async def nslookup(path, name):
    p = await asyncio.create_subprocess_exec(
        "nsenter", f"--net={path}", "/bin/busybox", "nslookup", name, resolver.ADDRESS,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = await asyncio.wait_for(p.communicate(), 20)
    return p.returncode, out.decode()


@root
def test_busybox_nslookup(ns):
    async def main():
        async with serving(ns) as (r, up):
            rc, out = await nslookup(ns, "web")
            assert rc == 0 and "10.9.0.2" in out, out
            rc, out = await nslookup(ns, "db")
            assert rc == 0 and "10.9.0.3" in out and "10.9.0.4" in out, out
            rc, out = await nslookup(ns, "ext.example")
            assert rc == 0 and "203.0.113.7" in out, out
            rc, out = await nslookup(ns, "nope.example")
            assert rc != 0 and "NXDOMAIN" in out, out
            # Our names never reach the upstream, whatever the type asked.
            assert {name for _, _, name in up.seen} == {"ext.example", "nope.example"}
    run(main())


@root
def test_python_client_udp_and_tcp(ns):
    async def main():
        async with serving(ns) as (r, up):
            (raw,) = await udp(ns, dns.build_query("Web", dns.A, ident=0x1234))
            m = dns.parse(raw)
            assert m.id == 0x1234 and m.question.labels == (b"Web",)
            assert [(a.ttl, a.rdata) for a in m.answers] == [(600, bytes([10, 9, 0, 2]))]
            (raw,) = await udp(ns, dns.build_query("web", dns.AAAA, ident=2))
            assert dns.parse(raw).rcode == dns.NOERROR and dns.parse(raw).answers == ()
            (raw,) = await udp(ns, dns.build_query("2.0.9.10.in-addr.arpa", dns.PTR, ident=3))
            assert dns.parse(raw).answers[0].target == "web.mynet"

            raw = await tcp(ns, framed(dns.build_query("web.mynet", dns.A, ident=4)))
            m = dns.parse(raw[2:])
            assert m.id == 4 and m.answers[0].rdata == bytes([10, 9, 0, 2])
            # Two pipelined queries on one connection.
            raw = await tcp(ns, framed(dns.build_query("db", ident=5)) + framed(dns.build_query("web", ident=6)))
            n = struct.unpack_from("!H", raw)[0]
            assert dns.parse(raw[2:2 + n]).id == 5
    run(main())


@root
def test_forwarding(ns):
    async def main():
        async with serving(ns) as (r, up):
            # Forwarded with the client's id, relayed as the upstream sent it.
            (raw,) = await udp(ns, dns.build_query("ext.example", ident=0xABCD))
            m = dns.parse(raw)
            assert m.id == 0xABCD and m.answers[0].rdata == bytes([203, 0, 113, 7]) and m.answers[0].ttl == 30
            assert up.seen[-1] == ("udp", 0xABCD, "ext.example")
            # Truncated over UDP: relayed with TC; the client retries over TCP, forwarded over TCP.
            (raw,) = await udp(ns, dns.build_query("big.example", ident=7))
            assert dns.parse(raw).truncated
            raw = await tcp(ns, framed(dns.build_query("big.example", ident=8)))
            m = dns.parse(raw[2:])
            assert not m.truncated and len(m.answers) == 100 and up.seen[-1] == ("tcp", 8, "big.example")
            # Upstream failure and silence: SERVFAIL, within the per-upstream timeout.
            (raw,) = await udp(ns, dns.build_query("fail.example", ident=9))
            assert dns.parse(raw).rcode == dns.SERVFAIL
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            (raw,) = await udp(ns, dns.build_query("silent.example", ident=10))
            assert dns.parse(raw).rcode == dns.SERVFAIL and loop.time() - t0 < 2.5
            raw = await tcp(ns, framed(dns.build_query("silent.example", ident=11)))
            assert dns.parse(raw[2:]).rcode == dns.SERVFAIL
    run(main())


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@root
def test_upstream_order_and_no_upstream(ns):
    async def main():
        dead = _closed_port()
        servers = lambda port: ["not-an-ip", f"127.0.0.1:{dead}", f"127.0.0.1:{port}"]  # noqa: E731
        async with serving(ns, servers) as (r, up):
            (raw,) = await udp(ns, dns.build_query("ext.example", ident=1))
            assert dns.parse(raw).answers[0].rdata == bytes([203, 0, 113, 7])
            raw = await tcp(ns, framed(dns.build_query("ext.example", ident=2)))
            assert dns.parse(raw[2:]).answers[0].rdata == bytes([203, 0, 113, 7])
        async with serving(ns, lambda port: []) as (r, up):
            (raw,) = await udp(ns, dns.build_query("ext.example", ident=3))
            assert dns.parse(raw).rcode == dns.SERVFAIL
            (raw,) = await udp(ns, dns.build_query("web", ident=4))  # ours still answered
            assert dns.parse(raw).answers
    run(main())


@root
def test_hostile_input(ns, monkeypatch):
    monkeypatch.setattr(resolver, "TCP_TIMEOUT", 0.5)
    monkeypatch.setattr(resolver, "MAX_TCP_CLIENTS", 2)

    async def main():
        async with serving(ns) as (r, up):
            loop_pointer = dns.HEADER.pack(1, 0, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01"
            garbage = [b"", b"\x00", os.urandom(11), os.urandom(512), loop_pointer,
                       dns.build_query("web")[:-3], dns.HEADER.pack(2, 0, 65535, 65535, 0, 0),
                       dns.build_reply(dns.parse(dns.build_query("web")), answers=[])]  # a response: ignored
            replies = await udp(ns, *garbage, want=len(garbage), timeout=1.0)
            for raw in replies:  # FORMERR for what has a query header, nothing for the rest
                assert dns.parse(raw).rcode == dns.FORMERR
            assert {dns.parse(raw).id for raw in replies} <= {1, 2} | {struct.unpack_from("!H", g)[0]
                                                                       for g in garbage if len(g) >= 12}

            # TCP: a huge length prefix and nothing after; a slow client; too many clients.
            def stalled(payload):
                with socket.create_connection((resolver.ADDRESS, resolver.PORT), timeout=5) as s:
                    s.sendall(payload)
                    return s.recv(10)  # b"" once the server gives up on us

            t0 = asyncio.get_running_loop().time()
            results = await asyncio.gather(
                asyncio.to_thread(netns.run_in, ns, stalled, b"\xff\xff" + b"x" * 100),
                asyncio.to_thread(netns.run_in, ns, stalled, b"\x00"))
            assert results == [b"", b""] and asyncio.get_running_loop().time() - t0 < 3
            raw = await tcp(ns, framed(b"\x00" * 5))  # too short for a header: closed, no reply
            assert raw == b""
            raw = await tcp(ns, framed(loop_pointer))
            assert dns.parse(raw[2:]).rcode == dns.FORMERR

            async def hold():
                return await asyncio.to_thread(netns.run_in, ns, stalled, b"")
            holders = [asyncio.create_task(hold()) for _ in range(2)]
            await asyncio.sleep(0.2)
            # The third client is turned away at once while two are connected.
            assert await tcp(ns, framed(dns.build_query("web")), timeout=5) == b""
            assert await asyncio.gather(*holders) == [b"", b""]
            raw = await tcp(ns, framed(dns.build_query("web", ident=77)))
            assert dns.parse(raw[2:]).id == 77  # served again once they are gone
            (raw,) = await udp(ns, dns.build_query("web", ident=78))
            assert dns.parse(raw).answers
    run(main())


@root
def test_forward_cap(ns, monkeypatch):
    monkeypatch.setattr(resolver, "MAX_FORWARDS", 3)

    async def main():
        async with serving(ns, timeout=1.0) as (r, up):
            queries = [dns.build_query("silent.example", ident=i) for i in range(10)]
            task = asyncio.create_task(udp(ns, *queries, want=10, timeout=3.0))
            await asyncio.sleep(0.3)
            (server,) = r._servers.values()
            assert len(server.tasks) == 3 and r.forwards == 3
            replies = await task
            assert sorted(dns.parse(raw).id for raw in replies) == list(range(10))
            assert all(dns.parse(raw).rcode == dns.SERVFAIL for raw in replies)
            assert len(server.tasks) == 0 and r.forwards == 0
            assert len(up.seen) == 3
    run(main())


@root
def test_serve_is_idempotent_and_stop_frees_the_port(ns, make_netns):
    async def main():
        r = make_resolver()
        await r.serve(CID, ns)
        await r.serve(CID, ns)
        assert r.serving() == {CID: ns}
        await r.stop(CID)
        await r.stop(CID)
        assert r.serving() == {}
        await r.serve(CID, ns)  # the port is free again
        (raw,) = await udp(ns, dns.build_query("web", ident=1))
        assert dns.parse(raw).answers
        # A restarted container in a new netns: moved there.
        other = make_netns()
        # pyroute2's synchronous API runs its own event loop: never on a thread running ours.
        await asyncio.to_thread(netlink.loopback_up, other)
        await r.serve(CID, other)
        assert r.serving() == {CID: other}
        (raw,) = await udp(other, dns.build_query("web", ident=2))
        assert dns.parse(raw).answers
        assert await udp(ns, dns.build_query("web", ident=3), timeout=0.5) == []
        # Without the redirect (no nft library) port 53 itself is bound, and a second server
        # cannot take it: a clear error, nothing served.
        plain = make_resolver(redirect=False)
        await plain.serve("e" * 64, ns)
        r2 = make_resolver(redirect=False)
        with pytest.raises(SystemFailure, match="cannot listen on 127.0.0.11:53"):
            await r2.serve("d" * 64, ns)
        assert r2.serving() == {}
        await plain.close()
        await r.close()
        assert r.serving() == {}
        await asyncio.sleep(0)
        assert asyncio.all_tasks() == {asyncio.current_task()}
    run(main())


def _bind_53(host: str) -> list[socket.socket]:
    taken = []
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        sock = socket.socket(socket.AF_INET, kind)
        sock.bind((host, 53))
        taken.append(sock)
    return taken


@root
def test_port_53_stays_free_for_the_containers_own_server(ns):
    # dnsmasq or coredns in a container on a user-defined network binds 0.0.0.0:53 (and so
    # 127.0.0.11:53 too); the embedded server listens elsewhere, reached through our redirect.
    async def main():
        r = make_resolver()
        await r.serve(CID, ns)
        taken = await asyncio.to_thread(netns.run_in, ns, _bind_53, "0.0.0.0")
        try:
            (raw,) = await udp(ns, dns.build_query("web", ident=7))
            assert dns.parse(raw).answers
            reply = await tcp(ns, framed(dns.build_query("web", ident=8)))
            assert dns.parse(reply[2:]).answers
            code, out = await nslookup(ns, "web")
            assert code == 0 and "10.9.0.2" in out, out
        finally:
            for sock in taken:
                sock.close()
        await r.close()
    run(main())


@root
def test_stop_cancels_pending_work(ns):
    async def main():
        up = await FakeUpstream().start()
        r = make_resolver([f"127.0.0.1:{up.port}"], timeout=30)
        await r.serve(CID, ns)
        try:
            def stalled():
                with socket.create_connection((resolver.ADDRESS, resolver.PORT), timeout=10) as s:
                    s.sendall(b"\x00")
                    return s.recv(10)
            pending = asyncio.create_task(udp(ns, dns.build_query("silent.example", ident=1), timeout=1.5))
            holder = asyncio.create_task(asyncio.to_thread(netns.run_in, ns, stalled))
            await asyncio.sleep(0.3)
            (server,) = r._servers.values()
            assert len(server.tasks) == 2 and r.forwards == 1
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await r.stop(CID)
            assert loop.time() - t0 < 1 and not server.tasks and r.forwards == 0
            assert await holder == b""  # the connection was closed
            assert await pending == []  # dropped, not answered late
        finally:
            await r.close()
            up.close()
    run(main())
