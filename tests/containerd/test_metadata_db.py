"""The metadata database itself: WAL, foreign keys, schema versions and forward migrations,
transactions (one per change, nested ones as savepoints)."""

import sqlite3
import threading

import pytest

from dockyard.containerd import metadata
from dockyard.containerd.metadata import Container, MetadataDB, RuntimeInfo
from dockyard.errors import Conflict, SystemFailure

SPEC = {"ociVersion": "1.2.0"}


def ctr(id):
    return Container(id, RuntimeInfo("io.containerd.runc.v2"), SPEC)


def test_wal_foreign_keys_and_version(db):
    raw = sqlite3.connect(db.path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()
    with db.transaction() as c:
        assert c.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.schema_version() == len(metadata.MIGRATIONS)


def test_foreign_keys_enforced(db):
    with pytest.raises(SystemFailure, match="FOREIGN KEY"):
        with db.transaction() as c:
            c.execute("INSERT INTO containers (namespace, id, runtime_name, spec, created_at, updated_at) "
                      "VALUES ('nowhere', 'x', 'r', '{}', 0, 0)")


def test_reopen_keeps_data(root, db):
    db.containers.create("moby", ctr("c1"))
    db.close()
    again = MetadataDB(root)
    assert again.containers.get("moby", "c1").id == "c1"
    assert again.schema_version() == len(metadata.MIGRATIONS)
    again.close()


def test_forward_migration_applies_once(root, db, monkeypatch):
    db.containers.create("moby", ctr("c1"))
    db.close()
    step = ("ALTER TABLE containers ADD COLUMN sandbox TEXT NOT NULL DEFAULT ''",)
    monkeypatch.setattr(metadata, "MIGRATIONS", metadata.MIGRATIONS + [step])
    for _ in range(2):  # the second open must not re-run the step
        again = MetadataDB(root)
        assert again.schema_version() == len(metadata.MIGRATIONS)
        with again.transaction() as c:
            assert c.execute("SELECT id, sandbox FROM containers").fetchall() == [("c1", "")]
        again.close()


def test_newer_schema_refused(root, db):
    with db.transaction() as c:
        c.execute("UPDATE schema_version SET version = 99")
    db.close()
    with pytest.raises(SystemFailure, match="newer"):
        MetadataDB(root)


def test_transaction_is_atomic(db):
    with pytest.raises(RuntimeError):
        with db.transaction():
            db.containers.create("moby", ctr("a"))
            db.containers.create("moby", ctr("b"))
            raise RuntimeError("crash before commit")
    assert db.containers.list("moby") == []


def test_nested_failure_rolls_back_only_itself(db):
    with db.transaction():
        db.containers.create("moby", ctr("a"))
        with pytest.raises(Conflict):
            db.containers.create("moby", ctr("a"))
        db.containers.create("moby", ctr("b"))
    assert [c.id for c in db.containers.list("moby")] == ["a", "b"]


def test_threads_share_one_database(db):
    def work(t):
        for i in range(20):
            db.containers.create("moby", ctr(f"t{t}-{i}"))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(db.containers.list("moby")) == 160
