"""engine/logs.py against logs written by the shim's own writer (shim/jsonlog.py encode_entry,
shim/logfile.py LogFile with rotation): tail/since/until/streams/timestamps in moby's order,
partial entries, and following across rotation and truncation until the container stops."""

import asyncio
import json

import pytest

from dockyard.engine import logs
from dockyard.engine.logs import STDERR, STDOUT, LogOptions
from dockyard.shim.jsonlog import encode_entry
from dockyard.shim.logfile import LogFile

T0 = 1_700_000_000 * 1_000_000_000  # ns


def write(path, items, max_size=-1, max_file=1):
    """items: (stream name, bytes, ns)."""
    f = LogFile(str(path), max_size, max_file)
    f.write([encode_entry(data, stream, ns) for stream, data, ns in items])
    f.close()


def collect(path, **opts):
    async def run():
        return [x async for x in logs.read_logs(str(path), LogOptions(**opts))]
    return asyncio.run(run())


def test_time_round_trip():
    for ns in (T0, T0 + 1, T0 + 120_000_000, T0 + 999_999_999):
        text = json.loads(encode_entry(b"x", "stdout", ns))["time"]
        assert logs.parse_time(text) == ns
    assert logs.format_time(T0 + 120_000_000) == "2023-11-14T22:13:20.120000000Z"
    assert logs.format_time(T0) == "2023-11-14T22:13:20.000000000Z"


def test_streams_and_partial_entries(tmp_path):
    p = tmp_path / "c-json.log"
    write(p, [("stdout", b"a\n", T0), ("stderr", b"b\n", T0 + 1), ("stdout", b"long ", T0 + 2),
              ("stdout", b"line\n", T0 + 2), ("stdout", b"no newline", T0 + 3)])
    assert collect(p) == [(STDOUT, b"a\n"), (STDERR, b"b\n"), (STDOUT, b"long "), (STDOUT, b"line\n"),
                          (STDOUT, b"no newline")]
    assert collect(p, stdout=False) == [(STDERR, b"b\n")]
    assert collect(p, stderr=False, tail=2) == [(STDOUT, b"line\n"), (STDOUT, b"no newline")]


def test_non_utf8_and_escapes_round_trip(tmp_path):
    p = tmp_path / "c-json.log"
    write(p, [("stdout", "<héllo> & \t\x01\n".encode(), T0)])
    assert collect(p) == [(STDOUT, "<héllo> & \t\x01\n".encode())]


def test_tail_counts_entries_of_both_streams_before_filtering(tmp_path):
    # moby tails the raw entries, then filters by stream: tail 2 of stdout-only is 1 line here.
    p = tmp_path / "c-json.log"
    write(p, [("stdout", b"1\n", T0), ("stdout", b"2\n", T0), ("stderr", b"3\n", T0)])
    assert collect(p, stderr=False, tail=2) == [(STDOUT, b"2\n")]
    assert collect(p, tail=0) == []
    assert collect(p, tail=10) == [(STDOUT, b"1\n"), (STDOUT, b"2\n"), (STDERR, b"3\n")]


def test_since_until_timestamps(tmp_path):
    p = tmp_path / "c-json.log"
    sec = 1_000_000_000
    write(p, [("stdout", b"%d\n" % i, T0 + i * sec) for i in range(5)])
    assert collect(p, since=T0 + 2 * sec) == [(STDOUT, b"2\n"), (STDOUT, b"3\n"), (STDOUT, b"4\n")]
    assert collect(p, until=T0 + 1 * sec) == [(STDOUT, b"0\n"), (STDOUT, b"1\n")]
    assert collect(p, since=T0 + sec, until=T0 + 3 * sec - 1) == [(STDOUT, b"1\n"), (STDOUT, b"2\n")]
    # tail first, then since: the last 2 are 3 and 4, both after since.
    assert collect(p, tail=2, since=T0 + sec) == [(STDOUT, b"3\n"), (STDOUT, b"4\n")]
    assert collect(p, tail=1, timestamps=True) == [(STDOUT, b"2023-11-14T22:13:24.000000000Z 4\n")]


def test_rotated_files_read_oldest_first_and_tail_across_them(tmp_path):
    p = tmp_path / "c-json.log"
    items = [("stdout", b"line %03d\n" % i, T0 + i) for i in range(100)]
    for item in items:  # one write per entry, as the shim writes what it read
        write(p, [item], max_size=600, max_file=3)
    assert (tmp_path / "c-json.log.2").exists() and not (tmp_path / "c-json.log.3").exists()
    got = collect(p)
    kept = [d for _, d, _ in items][-len(got):]
    assert [d for _, d in got] == kept and len(got) > 10
    assert [d for _, d in collect(p, tail=len(got) - 1)] == kept[1:]
    assert [d for _, d in collect(p, tail=3)] == kept[-3:]


def test_torn_line_is_skipped(tmp_path):
    p = tmp_path / "c-json.log"
    write(p, [("stdout", b"ok\n", T0)])
    with open(p, "ab") as f:
        f.write(b'{"log":"tor\n')
    write(p, [("stdout", b"ok2\n", T0)])
    assert collect(p) == [(STDOUT, b"ok\n"), (STDOUT, b"ok2\n")]


@pytest.mark.parametrize("max_file", [1, 3])
def test_follow_across_rotation_until_stopped(tmp_path, max_file):
    p = tmp_path / "c-json.log"
    write(p, [("stdout", b"before\n", T0)])
    state = {"running": True}
    n = 60

    async def writer():
        f = LogFile(str(p), 300, max_file)
        for i in range(n):
            f.write([encode_entry(b"line %d\n" % i, "stdout", T0 + i)])
            await asyncio.sleep(0.004)
        f.close()
        state["running"] = False

    async def run():
        got = []
        task = asyncio.create_task(writer())
        async for _, data in logs.read_logs(str(p), LogOptions(follow=True), lambda: state["running"],
                                            poll=0.001):
            got.append(data)
        await task
        return got

    got = asyncio.run(run())
    assert got[0] == b"before\n" or max_file == 1
    lines = [g for g in got if g != b"before\n"]
    if max_file > 1:  # renamed files are drained before the new one is opened: nothing lost
        assert lines == [b"line %d\n" % i for i in range(n)]
    else:  # truncated in place: what the reader had not reached may be gone, but order holds
        idx = [int(g.split()[1]) for g in lines]
        assert idx and idx == sorted(set(idx))


def test_follow_reads_every_file_rotated_between_two_looks(tmp_path):
    # Two rotations while the follower sleeps: the file it had open is now .2, the next one .1;
    # it drains its own (still open) file, then .1 whole, then the new current file.
    p = tmp_path / "c-json.log"
    write(p, [("stdout", b"first\n", T0)])
    state = {"running": True, "written": False}
    entry = len(encode_entry(b"line 00\n", "stdout", T0))

    async def run():
        got = []
        async for _, data in logs.read_logs(str(p), LogOptions(follow=True), lambda: state["running"],
                                            poll=0.05):
            got.append(data)
            if not state["written"]:
                state["written"] = True
                f = LogFile(str(p), 2 * entry, 3)  # two entries a file
                f.write([encode_entry(b"line %02d\n" % i, "stdout", T0 + i) for i in range(5)])
                f.close()
                state["running"] = False
        return got

    assert asyncio.run(run()) == [b"first\n"] + [b"line %02d\n" % i for i in range(5)]


def test_follow_ends_when_client_gone(tmp_path):
    p = tmp_path / "c-json.log"
    write(p, [("stdout", b"x\n", T0)])

    async def run():
        gone = {"v": False}
        got = []
        async for _, data in logs.read_logs(str(p), LogOptions(follow=True), lambda: True,
                                            lambda: gone["v"], poll=0.001):
            got.append(data)
            gone["v"] = True
        return got

    assert asyncio.run(run()) == [b"x\n"]


def test_missing_log_is_empty(tmp_path):
    assert collect(tmp_path / "none-json.log") == []
    assert collect(tmp_path / "none-json.log", follow=True) == []
