"""One SQLite database file the way every store here uses it: WAL journal, synchronous=FULL,
foreign keys on, one transaction per change, a versioned schema moved forward by migrations.

`transaction()` is the unit of change: BEGIN IMMEDIATE (writers in other processes wait for
the lock instead of failing half-way), COMMIT on success, ROLLBACK on any exception. Nested calls
join the outer transaction as savepoints, so a caller (GC, a composite change) can make several calls atomic.
SQLite errors (disk full, I/O error, a lock held too long) surface as `SystemFailure` after the
rollback. A SIGKILL at any point leaves the last committed state: that is SQLite's guarantee
with WAL, and `tests/containerd/test_metadata_crash.py` checks it."""

import contextlib
import sqlite3
import threading
from typing import Iterator, Sequence

from dockyard.errors import SystemFailure


class Database:
    def __init__(self, path: str, migrations: Sequence[Sequence[str]]):
        """`migrations[i]` holds the statements that take the schema from version i to i + 1."""
        self.path = path
        self._lock = threading.RLock()
        self._depth = 0
        try:
            self._conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as e:
            raise SystemFailure(f"open {path}: {e}") from None
        self._migrate(migrations)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _migrate(self, migrations: Sequence[Sequence[str]]) -> None:
        with self.transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                db.execute("INSERT INTO schema_version (version) VALUES (0)")
            version = row[0] if row else 0
            if version > len(migrations):
                raise SystemFailure(f"{self.path} has schema version {version}, newer than this "
                                    f"build's {len(migrations)}; refusing to open it")
            for step in migrations[version:]:
                for statement in step:
                    db.execute(statement)
            db.execute("UPDATE schema_version SET version = ?", (len(migrations),))

    def schema_version(self) -> int:
        with self.transaction() as db:
            return db.execute("SELECT version FROM schema_version").fetchone()[0]

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._depth:
                # Nested: a savepoint, so a failed inner call undoes only its own writes.
                savepoint = f"sp{self._depth}"
                self._depth += 1
                try:
                    self._conn.execute(f"SAVEPOINT {savepoint}")
                    try:
                        yield self._conn
                    except BaseException:
                        self._conn.execute(f"ROLLBACK TO {savepoint}")
                        raise
                    finally:
                        self._conn.execute(f"RELEASE {savepoint}")
                finally:
                    self._depth -= 1
                return
            self._depth = 1
            try:
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                    yield self._conn
                    self._conn.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise SystemFailure(f"database {self.path}: {e}") from None
            finally:
                self._depth = 0
