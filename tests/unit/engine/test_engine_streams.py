import struct

import pytest
from hypothesis import given, strategies as st

from dockyard.engine.streams import (MAX_FRAME, MULTIPLEXED_STREAM, RAW_STREAM, STDERR, STDOUT,
                                     SYSTEMERR, Demuxer, DetachKeys, demux, frame,
                                     parse_detach_keys, stream_content_type)
from dockyard.errors import InvalidArgument


def test_frame_header_is_docker_stdcopy():
    assert frame(STDOUT, b"hello") == b"\x01\x00\x00\x00\x00\x00\x00\x05hello"
    assert frame(STDERR, b"x") == b"\x02\x00\x00\x00\x00\x00\x00\x01x"
    assert frame(STDOUT, b"") == b""


def test_large_payload_is_split():
    data = bytes(range(256)) * 300  # 76800 bytes
    framed = frame(STDOUT, data)
    sizes = []
    pos = 0
    while pos < len(framed):
        stream, size = struct.unpack(">B3xI", framed[pos:pos + 8])
        assert stream == STDOUT
        sizes.append(size)
        pos += 8 + size
    assert sizes == [MAX_FRAME, MAX_FRAME, len(data) - 2 * MAX_FRAME]
    assert b"".join(p for _, p in demux(framed)) == data


def test_unknown_stream_refused():
    with pytest.raises(ValueError):
        frame(7, b"x")
    with pytest.raises(InvalidArgument):
        Demuxer().feed(b"\x09\x00\x00\x00\x00\x00\x00\x01x")


def test_truncated_stream_detected():
    with pytest.raises(InvalidArgument):
        demux(frame(STDOUT, b"abc")[:-1])
    d = Demuxer()
    assert d.feed(frame(STDOUT, b"abc")[:5]) == []
    assert d.pending == 5


chunks = st.lists(st.tuples(st.sampled_from([STDOUT, STDERR, SYSTEMERR]),
                            st.binary(min_size=1, max_size=300)), max_size=20)


@given(chunks, st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=10))
def test_framing_round_trip_in_any_pieces(items, cuts):
    framed = b"".join(frame(s, d) for s, d in items)
    d = Demuxer()
    out = []
    pos = 0
    i = 0
    while pos < len(framed):
        step = cuts[i % len(cuts)]
        out += d.feed(framed[pos:pos + step])
        pos += step
        i += 1
    assert d.pending == 0
    assert out == items


def test_content_type_by_tty_and_version():
    assert stream_content_type(False, "1.45") == MULTIPLEXED_STREAM
    assert stream_content_type(False, "1.42") == MULTIPLEXED_STREAM
    assert stream_content_type(True, "1.45") == RAW_STREAM
    assert stream_content_type(False, "1.41") == RAW_STREAM
    with pytest.raises(InvalidArgument):
        stream_content_type(False, "one.two")


@pytest.mark.parametrize("spec, keys", [
    ("ctrl-p,ctrl-q", b"\x10\x11"),
    ("ctrl-@", b"\x00"),
    ("ctrl-a,x", b"\x01x"),
    ("ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_", b"\x1b\x1c\x1d\x1e\x1f"),
    ("DEL", b"\x7f"),
    ("a,b,c", b"abc"),
])
def test_detach_keys_grammar(spec, keys):
    assert parse_detach_keys(spec) == keys


@pytest.mark.parametrize("spec", ["ctrl-", "ctrl-1", "ctrl-P", "ctrl-pp", "alt-x", "ab", "a,,b",
                                  "ctrl-p,", ",", "é"])
def test_detach_keys_junk_refused(spec):
    with pytest.raises(InvalidArgument, match=r"Invalid detach keys"):
        DetachKeys(spec)


def test_empty_spec_is_the_default():
    assert DetachKeys("").keys == b"\x10\x11"
    assert DetachKeys(None).keys == b"\x10\x11"


def test_detach_across_reads_swallows_the_sequence():
    d = DetachKeys()
    assert d.feed(b"ls\r") == (b"ls\r", False)
    assert d.feed(b"\x10") == (b"", False)
    assert d.feed(b"\x11after") == (b"", True)
    assert d.feed(b"more") == (b"", True)
    assert d.flush() == b""


def test_detach_inside_one_write():
    assert DetachKeys().feed(b"abc\x10\x11def") == (b"abc", True)


def test_broken_sequence_is_forwarded():
    d = DetachKeys()
    assert d.feed(b"\x10") == (b"", False)
    assert d.feed(b"x") == (b"\x10x", False)
    assert d.feed(b"\x10") == (b"", False)
    assert d.flush() == b"\x10"


@given(st.binary(max_size=200), st.lists(st.integers(min_value=1, max_value=16), min_size=1))
def test_detach_forwards_everything_before_the_sequence(data, cuts):
    d = DetachKeys("ctrl-a,b,ctrl-c")
    out = b""
    pos = 0
    i = 0
    detached = False
    while pos < len(data) and not detached:
        piece = data[pos:pos + cuts[i % len(cuts)]]
        forward, detached = d.feed(piece)
        out += forward
        pos += len(piece)
        i += 1
    idx = data.find(b"\x01b\x03")
    if idx < 0:
        assert not detached
        assert out + d.flush() == data
    else:
        assert detached
        assert out == data[:idx]
