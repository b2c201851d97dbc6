"""The pure parts of garbage collection: tri-colour marking over a table of graphs, label
references, lease expiry."""

import datetime

import pytest

from dockyard.containerd.gc import label_refs, lease_expired, mark, parse_rfc3339


def n(key, type="content", ns="ns"):
    return (ns, type, key)


GRAPHS = [
    # (name, roots, edges, expected reachable)
    ("empty", [], {}, set()),
    ("root alone", ["r"], {}, {"r"}),
    ("chain", ["r"], {"r": ["a"], "a": ["b"], "c": ["d"]}, {"r", "a", "b"}),
    ("unreachable cycle", ["r"], {"a": ["b"], "b": ["a"]}, {"r"}),
    ("reachable cycle", ["r"], {"r": ["c"], "c": ["d"], "d": ["c"]}, {"r", "c", "d"}),
    ("diamond", ["r"], {"r": ["a", "b"], "a": ["z"], "b": ["z"]}, {"r", "a", "b", "z"}),
    ("self loop", ["r"], {"r": ["r"], "x": ["x"]}, {"r"}),
    ("two roots share", ["r1", "r2"], {"r1": ["s"], "r2": ["s"], "s": ["t"]}, {"r1", "r2", "s", "t"}),
    ("edge into root", ["r"], {"x": ["r"]}, {"r"}),
    ("duplicate roots", ["r", "r"], {"r": ["a"]}, {"r", "a"}),
]


@pytest.mark.parametrize("name,roots,edges,expected", GRAPHS, ids=[g[0] for g in GRAPHS])
def test_mark(name, roots, edges, expected):
    live = mark([n(r) for r in roots], lambda node: [n(k) for k in edges.get(node[2], [])])
    assert live == {n(k) for k in expected}


def test_mark_deep_chain_is_iterative():
    depth = 100_000
    live = mark([n(0)], lambda node: [n(node[2] + 1)] if node[2] < depth else [])
    assert len(live) == depth + 1


def test_label_refs():
    labels = {
        "containerd.io/gc.ref.content": "sha256:1",
        "containerd.io/gc.ref.content.config": "sha256:2",
        "containerd.io/gc.ref.content.l.0": "sha256:3",
        "containerd.io/gc.ref.snapshot.overlayfs": "chain-1",
        "containerd.io/gc.ref.snapshot.": "ignored",
        "containerd.io/gc.ref.contentX": "ignored",
        "containerd.io/gc.root": "x",
        "other": "sha256:4",
    }
    assert sorted(label_refs("ns", labels)) == sorted([
        n("sha256:1"), n("sha256:2"), n("sha256:3"), n("chain-1", "snapshots/overlayfs")])


UTC = datetime.timezone.utc


@pytest.mark.parametrize("text,expected", [
    ("2024-05-06T07:08:09Z", datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)),
    ("2024-05-06T07:08:09.123456789Z", datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)),
    ("2024-05-06T09:08:09+02:00", datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)),
    ("2024-05-06t07:08:09.5z", datetime.datetime(2024, 5, 6, 7, 8, 9, 500000, tzinfo=UTC)),
    ("2024-05-06 07:08:09Z", None),
    ("2024-05-06T07:08:09", None),  # RFC3339 needs an offset
    ("2024-13-06T07:08:09Z", None),
    ("tomorrow", None),
])
def test_parse_rfc3339(text, expected):
    assert parse_rfc3339(text) == expected


def test_lease_expiry():
    now = datetime.datetime(2025, 1, 1, tzinfo=UTC)
    assert lease_expired({"containerd.io/gc.expire": "2024-12-31T23:59:59Z"}, now)
    assert not lease_expired({"containerd.io/gc.expire": "2025-01-01T00:00:01Z"}, now)
    assert not lease_expired({}, now)
    assert not lease_expired({"containerd.io/gc.expire": "garbage"}, now)  # ignored, as containerd
