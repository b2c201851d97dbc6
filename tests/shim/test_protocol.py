"""The shim protocol's framing and messages, and the json-file log format: pure, no root."""

import json
import os

import pytest

from dockyard.shim import protocol as P
from dockyard.shim.jsonlog import BUF_SIZE, LineSplitter, encode_entry, rfc3339nano
from dockyard.shim.logfile import LogFile


def test_frames_round_trip_in_any_chunking():
    data = P.encode_request(1, "state", {"exec_id": "e"}) + P.encode_frame(P.STDIN, b"\x00\xffabc") + \
        P.encode_frame(P.STDIN_CLOSE)
    for step in (1, 2, 5, len(data)):
        decoder, frames = P.FrameDecoder(), []
        for i in range(0, len(data), step):
            frames += decoder.feed(data[i:i + step])
        assert [k for k, _ in frames] == [P.REQUEST, P.STDIN, P.STDIN_CLOSE]
        assert frames[1][1] == b"\x00\xffabc" and decoder.pending == 0
        assert P.decode_request(frames[0][1]) == (1, "state", {"exec_id": "e"})


def test_header_layout():
    assert P.encode_frame(P.STDOUT, b"hi") == b"\x00\x00\x00\x02\x01\x03hi"


@pytest.mark.parametrize("header", [b"\x00\x00\x00\x00\x02\x01",  # another version
                                    (P.MAX_BODY + 1).to_bytes(4, "big") + b"\x01\x01"])
def test_unrecoverable_frames_are_fatal(header):
    with pytest.raises(P.ProtocolError) as e:
        P.FrameDecoder().feed(header)
    assert e.value.fatal


@pytest.mark.parametrize("body, req_id, words", [
    (b"{nope", None, "malformed"),
    (b"[1]", None, "not a JSON object"),
    (b'{"id": "1", "method": "state"}', None, "id must be an integer"),
    (b'{"id": true, "method": "state"}', None, "id must be an integer"),
    (b'{"id": 3, "method": 4}', 3, "method must be a string"),
    (b'{"id": 3, "method": "reboot"}', 3, "unknown method"),
    (b'{"id": 3, "method": "state", "params": []}', 3, "params must be an object"),
    (b'\xff\xfe', None, "not UTF-8"),
])
def test_bad_requests_are_invalid_with_the_id_when_known(body, req_id, words):
    with pytest.raises(P.ShimError) as e:
        P.decode_request(body)
    assert e.value.code == P.INVALID and e.value.req_id == req_id and words in str(e.value)


def test_responses():
    kind, body = P.FrameDecoder().feed(P.encode_result(4, {"pid": 9}))[0]
    assert kind == P.RESPONSE and P.decode_response(body) == (4, {"pid": 9}, None)
    _, body = P.FrameDecoder().feed(P.encode_error(5, P.CONFLICT, "two\nlines"))[0]
    rid, result, err = P.decode_response(body)
    assert (rid, result, err.code, str(err)) == (5, None, P.CONFLICT, "two lines")


def test_events():
    frame = P.encode_event(P.OOM, oom_kills=2)
    assert frame[4:6] == bytes((P.VERSION, P.EVENT)) and P.EVENT == 8
    kind, body = P.FrameDecoder().feed(frame)[0]
    assert kind == P.EVENT and body == b'{"event":"oom","oom_kills":2}'
    assert P.decode_event(body) == {"event": "oom", "oom_kills": 2}
    for bad in (b"[]", b'{"oom_kills": 1}', b'{"event": 1}', b"{"):
        with pytest.raises(P.ProtocolError):
            P.decode_event(bad)
    assert P.decode_request(b'{"id": 1, "method": "subscribe"}') == (1, "subscribe", {})


@pytest.mark.parametrize("value", [{}, {"a": [1, -2.5, None, True, "é\u2028\"\\"]}, [], "x", 0,
                                   {"nested": {"deep": [[{}]]}}])
def test_json_matches_the_json_package(value):
    assert P.dumps(value) == json.dumps(value, separators=(",", ":"))
    assert P.loads(" " + json.dumps(value) + "\n") == value


@pytest.mark.parametrize("text", ["", "{", "[1,]", "NaN", "1 2", '{"a":1}x', "[" * 100000])
def test_json_errors_are_value_errors(text):
    with pytest.raises(ValueError):
        P.loads(text)


# -- json-file ---------------------------------------------------------------------------------

def test_entry_is_dockers_json_file_line():
    ns = 1136214245_000000000 + 123_400_000  # 2006-01-02T15:04:05.1234Z
    assert encode_entry(b"hi\n", "stdout", ns) == \
        b'{"log":"hi\\n","stream":"stdout","time":"2006-01-02T15:04:05.1234Z"}\n'
    # Go's encoding/json: HTML characters, control characters and U+2028 escaped, invalid
    # UTF-8 as \ufffd, other non-ASCII as UTF-8.
    line = '<a&b>\t"\\\x01\x7f é\u2028'.encode() + b"\xff"
    entry = json.loads(encode_entry(line, "stderr", ns))
    assert entry == {"log": '<a&b>\t"\\\x01\x7f é\u2028\ufffd', "stream": "stderr",
                     "time": "2006-01-02T15:04:05.1234Z"}
    raw = encode_entry(line, "stderr", ns)
    assert b"\\u003ca\\u0026b\\u003e\\t\\\"\\\\\\u0001\x7f \xc3\xa9\\u2028\\ufffd" in raw


def test_rfc3339nano_trims_zeros():
    assert rfc3339nano(0) == "1970-01-01T00:00:00Z"
    assert rfc3339nano(1_500_000_000) == "1970-01-01T00:00:01.5Z"
    assert rfc3339nano(999_999_999) == "1970-01-01T00:00:00.999999999Z"


def test_splitter_lines_and_partials_as_moby_copier():
    s = LineSplitter()
    assert s.feed(b"a\nb", 1) == [(b"a\n", 1)]
    assert s.feed(b"c\n\n", 2) == [(b"bc\n", 2), (b"\n", 2)]
    long = b"x" * (BUF_SIZE * 2 + 5)
    out = s.feed(long, 3) + s.feed(b"y\nz", 4)
    # full buffers are logged as partial pieces; the rest of the line carries the first piece's time
    assert out == [(b"x" * BUF_SIZE, 3), (b"x" * BUF_SIZE, 3), (b"xxxxxy\n", 3)]
    assert s.close(5) == [(b"z", 5)]  # end of stream: a partial entry, no newline
    assert s.close(6) == []


def test_splitter_line_of_exactly_the_buffer_size():
    s = LineSplitter()
    assert s.feed(b"x" * (BUF_SIZE - 1) + b"\n", 1) == [(b"x" * (BUF_SIZE - 1) + b"\n", 1)]
    assert s.feed(b"x" * BUF_SIZE + b"\n", 2) == [(b"x" * BUF_SIZE, 2), (b"\n", 2)]


def test_logfile_rotates_like_dockerd(tmp_path):
    path = str(tmp_path / "c-json.log")
    log = LogFile(path, max_size=100, max_file=3)
    entries = [b"%02d" % i + b"x" * 37 + b"\n" for i in range(10)]  # 40 bytes each
    log.write(entries[:5])
    log.write(entries[5:])
    log.close()
    assert sorted(os.listdir(tmp_path)) == ["c-json.log", "c-json.log.1", "c-json.log.2"]
    # rotated after the entry that reached 100 bytes: 3 entries a file, newest in c-json.log
    assert open(path + ".2", "rb").read() == b"".join(entries[3:6])
    assert open(path + ".1", "rb").read() == b"".join(entries[6:9])
    assert open(path, "rb").read() == entries[9]


def test_logfile_with_one_file_truncates(tmp_path):
    path = str(tmp_path / "log")
    log = LogFile(path, max_size=50, max_file=1)
    log.write([b"a" * 30 + b"\n", b"b" * 30 + b"\n", b"c\n"])
    log.close()
    assert os.listdir(tmp_path) == ["log"] and open(path, "rb").read() == b"c\n"
