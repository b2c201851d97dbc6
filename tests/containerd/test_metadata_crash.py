"""A SIGKILL at any instant of a write never leaves meta.db inconsistent: a child process
writes composite changes (container + lease + resources + namespace label, and deletions) in
single transactions; we kill it at random moments, many times, then check SQLite's integrity,
the foreign keys and the invariants every committed change keeps."""

import os
import random
import signal
import sqlite3
import time

from dockyard.containerd.metadata import Container, MetadataDB, Resource, RuntimeInfo
from dockyard.errors import NotFound

NS = "crash"
KILLS = 40


def _writer(root: str) -> None:
    db = MetadataDB(root)
    # Checkpoint often, so some kills land in the middle of a WAL checkpoint too.
    db._conn.execute("PRAGMA wal_autocheckpoint=4")
    try:
        i = int(db.namespaces.get(NS).labels["last"]) + 1
    except NotFound:
        i = 0
    while True:
        with db.transaction():
            db.containers.create(NS, Container(f"c{i}", RuntimeInfo("io.containerd.runc.v2"),
                                               {"ociVersion": "1.2.0", "pad": "x" * 2000}, labels={"seq": str(i)}))
            db.leases.create(NS, f"l{i}", {"seq": str(i)})
            for k in range(3):
                db.leases.add_resource(NS, f"l{i}", Resource(f"sha256:{i:032x}{k:032x}", "content"))
            if i % 4 == 0 and i >= 4:
                db.containers.delete(NS, f"c{i - 3}")
                db.leases.delete(NS, f"l{i - 3}")
            db.namespaces.update(NS, {"last": str(i)}, ["labels.last"])
        i += 1


def _expected_ids(last: int) -> set[int]:
    return {j for j in range(last + 1) if not (j % 4 == 1 and j + 3 <= last)}


def _check(root: str) -> int:
    path = os.path.join(root, "meta.db")
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        raw.execute("PRAGMA foreign_keys=ON")
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        raw.close()
    db = MetadataDB(root)
    try:
        try:
            last = int(db.namespaces.get(NS).labels["last"])
        except NotFound:
            assert db.containers.list(NS) == [] and db.leases.list(NS) == []
            return -1
        expected = _expected_ids(last)
        assert {int(c.id[1:]) for c in db.containers.list(NS)} == expected
        assert {int(x.id[1:]) for x in db.leases.list(NS)} == expected
        for j in expected:
            assert len(db.leases.list_resources(NS, f"l{j}")) == 3
        return last
    finally:
        db.close()


def test_sigkill_mid_write_leaves_db_consistent(root):
    os.makedirs(root)
    rng = random.Random(0x5EED)
    progress = []
    for _ in range(KILLS):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _writer(root)
            finally:
                os._exit(code)
        time.sleep(rng.uniform(0.005, 0.12))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        # The child must have died by our signal, not by an error of its own.
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        progress.append(_check(root))
    assert progress == sorted(progress)
    assert progress[-1] > KILLS  # the writes really happened between the kills
