"""DNS wire format (RFC 1035) for the embedded resolver: parse what a container asks, build what
we answer. Pure and I/O-free, so every edge case is a unit test.

Input comes from any process in a container, so parsing is defensive: every read is bounds-checked,
compression pointers may only point backwards (which makes loops impossible) and a name is capped at
255 octets; anything malformed raises `FormatError` and nothing else. Output never compresses names
except the answer owner, which is always a pointer to the question (offset 12).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from dockyard.errors import InvalidArgument

# Record types and classes we name (others pass through as numbers).
A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, SRV, OPT, ANY = 1, 2, 5, 6, 12, 15, 16, 28, 33, 41, 255
IN = 1

# Response codes (RFC 1035 4.1.1).
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5

# Header flag bits.
QR = 0x8000
AA = 0x0400
TC = 0x0200
RD = 0x0100
RA = 0x0080
OPCODE_MASK = 0x7800
RCODE_MASK = 0x000F

HEADER = struct.Struct("!HHHHHH")
MAX_NAME = 255  # octets on the wire, length bytes included (RFC 1035 2.3.4)
MAX_LABEL = 63
MIN_UDP_SIZE = 512  # what every client accepts (RFC 1035 4.2.1)
QUESTION_OFFSET = HEADER.size
QUESTION_POINTER = b"\xc0\x0c"  # compression pointer to the question's name


class FormatError(InvalidArgument):
    """The bytes are not a well-formed DNS message (or a name cannot be encoded)."""


@dataclass(frozen=True)
class Question:
    labels: tuple[bytes, ...]  # as received (case kept: DNS 0x20 clients check the echo)
    qtype: int
    qclass: int

    @property
    def name(self) -> str:
        """Presentation form without the trailing dot ("" for the root)."""
        return ".".join(label.decode("latin-1") for label in self.labels)

    def wire(self) -> bytes:
        return encode_labels(self.labels) + struct.pack("!HH", self.qtype, self.qclass)


@dataclass(frozen=True)
class Record:
    name: str
    rtype: int
    rclass: int
    ttl: int
    rdata: bytes
    target: str | None = None  # the decoded name of PTR/CNAME/NS rdata


@dataclass(frozen=True)
class Message:
    id: int
    flags: int
    questions: tuple[Question, ...]
    answers: tuple[Record, ...]
    authority: tuple[Record, ...]
    additional: tuple[Record, ...]

    @property
    def is_response(self) -> bool:
        return bool(self.flags & QR)

    @property
    def opcode(self) -> int:
        return (self.flags & OPCODE_MASK) >> 11

    @property
    def rcode(self) -> int:
        return self.flags & RCODE_MASK

    @property
    def truncated(self) -> bool:
        return bool(self.flags & TC)

    @property
    def question(self) -> Question | None:
        return self.questions[0] if len(self.questions) == 1 else None

    @property
    def udp_size(self) -> int:
        """Largest UDP reply the sender takes: its EDNS0 OPT payload size, at least 512."""
        for rr in self.additional:
            if rr.rtype == OPT:
                return max(MIN_UDP_SIZE, rr.rclass)
        return MIN_UDP_SIZE


def parse_header(data: bytes) -> tuple[int, int, int, int, int, int]:
    """(id, flags, qdcount, ancount, nscount, arcount)."""
    if len(data) < HEADER.size:
        raise FormatError(f"message of {len(data)} bytes is shorter than a DNS header")
    return HEADER.unpack_from(data)


def read_name(data: bytes, offset: int) -> tuple[tuple[bytes, ...], int]:
    """Labels of the name at `offset` and the offset just after it (after the first pointer, if any).

    A pointer must point before the start of the label sequence it interrupts, so each jump moves
    strictly backwards and a loop cannot be expressed."""
    labels: list[bytes] = []
    total = 0
    end = None  # where the caller resumes: after the first pointer
    pos = offset
    floor = offset  # pointers must go below this
    while True:
        if pos >= len(data):
            raise FormatError("name runs past the end of the message")
        length = data[pos]
        kind = length & 0xC0
        if kind == 0xC0:
            if pos + 1 >= len(data):
                raise FormatError("truncated compression pointer")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if target >= floor:
                raise FormatError("compression pointer does not point backwards")
            if end is None:
                end = pos + 2
            pos = floor = target
            continue
        if kind:
            raise FormatError(f"unsupported label type 0x{kind:02x}")
        total += length + 1
        if total > MAX_NAME:
            raise FormatError("name longer than 255 octets")
        if length == 0:
            return tuple(labels), (pos + 1 if end is None else end)
        if pos + 1 + length > len(data):
            raise FormatError("label runs past the end of the message")
        labels.append(bytes(data[pos + 1:pos + 1 + length]))
        pos += 1 + length


def _read_question(data: bytes, offset: int) -> tuple[Question, int]:
    labels, offset = read_name(data, offset)
    if offset + 4 > len(data):
        raise FormatError("truncated question")
    qtype, qclass = struct.unpack_from("!HH", data, offset)
    return Question(labels, qtype, qclass), offset + 4


def _read_record(data: bytes, offset: int) -> tuple[Record, int]:
    labels, offset = read_name(data, offset)
    if offset + 10 > len(data):
        raise FormatError("truncated resource record")
    rtype, rclass, ttl, rdlength = struct.unpack_from("!HHIH", data, offset)
    offset += 10
    if offset + rdlength > len(data):
        raise FormatError("resource record data runs past the end of the message")
    rdata = bytes(data[offset:offset + rdlength])
    target = None
    if rtype in (PTR, CNAME, NS):
        tlabels, tend = read_name(data, offset)
        if tend != offset + rdlength:
            raise FormatError("name in record data does not fill it")
        target = _presentation(tlabels)
    elif rtype == A and rdlength != 4 or rtype == AAAA and rdlength != 16:
        raise FormatError("address record of the wrong length")
    return Record(_presentation(labels), rtype, rclass, ttl, rdata, target), offset + rdlength


def _presentation(labels: tuple[bytes, ...]) -> str:
    return ".".join(label.decode("latin-1") for label in labels)


def parse(data: bytes) -> Message:
    """A whole message: header, questions and records. Raises FormatError only."""
    ident, flags, qd, an, ns, ar = parse_header(data)
    # Each question takes at least 5 bytes and each record 11: refuse counts the data cannot hold
    # before looping over them (a 12-byte packet may claim 65535 of each).
    if qd * 5 + (an + ns + ar) * 11 > len(data) - HEADER.size:
        raise FormatError("section counts exceed the message length")
    offset = HEADER.size
    questions = []
    for _ in range(qd):
        q, offset = _read_question(data, offset)
        questions.append(q)
    sections = []
    for count in (an, ns, ar):
        records = []
        for _ in range(count):
            rr, offset = _read_record(data, offset)
            records.append(rr)
        sections.append(tuple(records))
    return Message(ident, flags, tuple(questions), *sections)


def encode_labels(labels: tuple[bytes, ...]) -> bytes:
    out = bytearray()
    for label in labels:
        if not label or len(label) > MAX_LABEL:
            raise FormatError(f"label of {len(label)} octets")
        out.append(len(label))
        out += label
    out.append(0)
    if len(out) > MAX_NAME:
        raise FormatError("name longer than 255 octets")
    return bytes(out)


def encode_name(name: str) -> bytes:
    """Wire form of a presentation name ("a.b" or "a.b."); ASCII only."""
    name = name.rstrip(".") if name != "." else ""
    try:
        raw = name.encode("ascii")
    except UnicodeEncodeError:
        raise FormatError(f"name {name!r} is not ASCII") from None
    return encode_labels(tuple(raw.split(b".")) if raw else ())


def build_query(name: str, qtype: int = A, ident: int = 0, recursion: bool = True,
                udp_size: int | None = None) -> bytes:
    """A one-question query (for clients and tests); udp_size adds an EDNS0 OPT record."""
    flags = RD if recursion else 0
    out = HEADER.pack(ident, flags, 1, 0, 0, 1 if udp_size else 0)
    out += encode_name(name) + struct.pack("!HH", qtype, IN)
    if udp_size:
        out += b"\x00" + struct.pack("!HHIH", OPT, udp_size, 0, 0)
    return out


def a_rdata(ip: str) -> bytes:
    try:
        return ipaddress.IPv4Address(ip).packed
    except ValueError:
        raise FormatError(f"not an IPv4 address: {ip!r}") from None


def build_reply(query: Message, rcode: int = NOERROR, answers: list[tuple[int, int, bytes]] = (),
                udp_size: int | None = None) -> bytes:
    """A reply to `query` (which has one question) with `answers` owned by the question's name,
    each (rtype, ttl, rdata). Recursion available is set (we forward), the query's id, opcode and
    RD are echoed. With `udp_size`, a reply that would not fit is sent truncated (TC, no answers)
    so the client retries over TCP (RFC 1035 4.2.1)."""
    q = query.question
    question = q.wire() if q is not None else b""
    body = b"".join(QUESTION_POINTER + struct.pack("!HHIH", rtype, IN, ttl, len(rdata)) + rdata
                    for rtype, ttl, rdata in answers)
    flags = QR | RA | (query.flags & (OPCODE_MASK | RD)) | (rcode & RCODE_MASK)
    count = len(answers)
    if udp_size is not None and HEADER.size + len(question) + len(body) > udp_size:
        flags |= TC
        body, count = b"", 0
    return HEADER.pack(query.id, flags, 1 if q is not None else 0, count, 0, 0) + question + body


def error_reply(data: bytes, rcode: int) -> bytes | None:
    """A header-only reply carrying `rcode` to a query we could not parse beyond its header (so the
    client fails fast instead of timing out); None when even that is not possible or the message is
    itself a response (never answer those: two resolvers could bounce them forever)."""
    try:
        ident, flags, *_ = parse_header(data)
    except FormatError:
        return None
    if flags & QR:
        return None
    return HEADER.pack(ident, QR | RA | (flags & (OPCODE_MASK | RD)) | rcode, 0, 0, 0, 0)


def ptr_rdata(name: str) -> bytes:
    return encode_name(name)


def reverse_name(ip: str) -> str:
    """"10.0.0.2" → "2.0.0.10.in-addr.arpa" (RFC 1035 3.5)."""
    return ipaddress.IPv4Address(ip).reverse_pointer


def ptr_address(labels: tuple[bytes, ...]) -> str | None:
    """The IPv4 address a PTR question asks about ("2.0.0.10.in-addr.arpa" → "10.0.0.2"), or None
    when it is not a full in-addr.arpa name."""
    if len(labels) != 6 or [label.lower() for label in labels[4:]] != [b"in-addr", b"arpa"]:
        return None
    octets = []
    for label in reversed(labels[:4]):
        if not label.isdigit() or len(label) > 3 or (len(label) > 1 and label[:1] == b"0"):
            return None
        value = int(label)
        if value > 255:
            return None
        octets.append(str(value))
    return ".".join(octets)
