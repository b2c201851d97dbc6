"""The content store: immutable blobs addressed by digest, written through resumable ingests
(runtime-and-containerd.md §4.5; containerd `core/content/content.go`, `plugins/content/local`).

Layout under the store root (`<containerd root>/content/`):

    blobs/sha256/<hex>                     committed, immutable (0444); shared by all namespaces
    ingest/<sha256(ns/ref)>/data           bytes received so far
                           /ref            "<ns>/<ref>", to list ingests and check the hash
                           /startedat, /updatedat, /total

A namespace sees a blob only through its own record in the metadata database (digest, size,
labels), as containerd's metadata store does; the bytes are stored once. Writing content that
another namespace already has still needs the bytes (so one namespace cannot claim content it
could not produce), and the commit then only adds the record.

Commit: fsync data → check size and digest against what the client expected → under the
metadata write lock, rename into blobs/ and fsync the directory, then record it. A failed check
leaves the ingest for a retry (`truncate(0)`) or `abort`. A writer holds an flock on its ingest,
so a second writer for the same ref is refused while the first is alive, and a crashed writer's
ingest is resumed from its current offset.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Protocol

from dockyard.errors import Conflict, InvalidArgument, NoSpace, NotFound, SystemFailure

from . import filters
from .identifiers import apply_label_update, validate_digest, validate_labels, validate_namespace, validate_ref
from .metadata import MetadataDB

_CHUNK = 1 << 20
_STALE_TMP_SECONDS = 600


@dataclass(frozen=True)
class Info:
    digest: str
    size: int
    created_at: int = 0
    updated_at: int = 0
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Status:
    ref: str
    offset: int
    total: int
    started_at: int
    updated_at: int
    expected: str = ""


class ReaderAt(Protocol):
    size: int

    def read_at(self, offset: int, n: int) -> bytes: ...
    def close(self) -> None: ...


class Writer(Protocol):
    ref: str

    def write(self, data: bytes) -> int: ...
    def digest(self) -> str: ...
    def status(self) -> Status: ...
    def truncate(self, size: int) -> None: ...
    def commit(self, size: int = 0, expected: str = "", labels: dict[str, str] | None = None) -> None: ...
    def close(self) -> None: ...


class ContentStore(Protocol):
    def info(self, ns: str, digest: str) -> Info: ...
    def update(self, ns: str, digest: str, labels: dict[str, str], fieldpaths: list[str] | None = None) -> Info: ...
    def list(self, ns: str, *filters: str) -> list[Info]: ...
    def delete(self, ns: str, digest: str) -> None: ...
    def reader_at(self, ns: str, digest: str) -> ReaderAt: ...
    def status(self, ns: str, ref: str) -> Status: ...
    def list_statuses(self, ns: str, *filters: str) -> list[Status]: ...
    def writer(self, ns: str, ref: str, total: int = 0, expected: str = "") -> Writer: ...
    def abort(self, ns: str, ref: str) -> None: ...


def _os_error(what: str, e: OSError) -> SystemFailure:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpace(f"{what}: no space left on device")
    return SystemFailure(f"{what}: {e.strerror or e}")


def _read_text(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write_small(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobReader:
    def __init__(self, path: str):
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.size = os.fstat(self._fd).st_size

    def read_at(self, offset: int, n: int) -> bytes:
        if offset < 0 or n < 0:
            raise InvalidArgument("read offset and length must not be negative")
        return os.pread(self._fd, n, offset)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> BlobReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalContentStore:
    def __init__(self, root: str, db: MetadataDB):
        self.root = root
        self._db = db
        self._blobs = os.path.join(root, "blobs", "sha256")
        self._ingest = os.path.join(root, "ingest")
        os.makedirs(self._blobs, mode=0o710, exist_ok=True)
        os.makedirs(self._ingest, mode=0o700, exist_ok=True)
        self._remove_stale_tmp()

    # -- paths: only ever built from a validated digest or from a hash of the ref --

    def blob_path(self, digest: str) -> str:
        return os.path.join(self._blobs, validate_digest(digest)[len("sha256:"):])

    def _ingest_key(self, ns: str, ref: str) -> str:
        return f"{validate_namespace(ns)}/{validate_ref(ref)}"

    def _ingest_path(self, key: str) -> str:
        return os.path.join(self._ingest, hashlib.sha256(key.encode()).hexdigest())

    def _remove_stale_tmp(self) -> None:
        # A crash while creating an ingest leaves its never-renamed temporary directory.
        now = time.time()
        for name in os.listdir(self._ingest):
            path = os.path.join(self._ingest, name)
            if name.startswith(".tmp-") and now - os.lstat(path).st_mtime > _STALE_TMP_SECONDS:
                shutil.rmtree(path, ignore_errors=True)

    # -- records --

    def _record(self, db, ns: str, digest: str):
        return db.execute("SELECT size, created_at, updated_at, labels FROM content "
                          "WHERE namespace = ? AND digest = ?", (ns, digest)).fetchone()

    def info(self, ns: str, digest: str) -> Info:
        validate_namespace(ns)
        validate_digest(digest)
        with self._db.transaction() as db:
            row = self._record(db, ns, digest)
        if row is None:
            raise NotFound(f"content {digest} not found in namespace {ns}")
        size, created, updated, labels = row
        return Info(digest, size, created, updated, json.loads(labels))

    def update(self, ns: str, digest: str, labels: dict[str, str], fieldpaths: list[str] | None = None) -> Info:
        with self._db.transaction() as db:
            current = self.info(ns, digest)
            new = apply_label_update(current.labels, labels, fieldpaths)
            now = time.time_ns()
            db.execute("UPDATE content SET labels = ?, updated_at = ? WHERE namespace = ? AND digest = ?",
                       (json.dumps(new, sort_keys=True), now, ns, digest))
        return Info(digest, current.size, current.created_at, now, new)

    def list(self, ns: str, *filters_: str) -> list[Info]:
        validate_namespace(ns)
        match = filters.parse(filters_)
        with self._db.transaction() as db:
            rows = db.execute("SELECT digest, size, created_at, updated_at, labels FROM content "
                              "WHERE namespace = ? ORDER BY digest", (ns,)).fetchall()
        infos = [Info(d, s, c, u, json.loads(lb)) for d, s, c, u, lb in rows]
        return [i for i in infos if match(filters.adaptor({"digest": i.digest, "size": str(i.size)}, i.labels))]

    def delete(self, ns: str, digest: str) -> None:
        validate_namespace(ns)
        path = self.blob_path(digest)
        with self._db.transaction() as db:
            if db.execute("DELETE FROM content WHERE namespace = ? AND digest = ?", (ns, digest)).rowcount == 0:
                raise NotFound(f"content {digest} not found in namespace {ns}")
            if db.execute("SELECT 1 FROM content WHERE digest = ? LIMIT 1", (digest,)).fetchone() is None:
                # Last reference: unlink under the write lock, so no commit of the same digest
                # can interleave. A crash right here leaves a record without bytes, which a
                # later commit of the same digest repairs.
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass

    def reader_at(self, ns: str, digest: str) -> BlobReader:
        self.info(ns, digest)
        try:
            return BlobReader(self.blob_path(digest))
        except FileNotFoundError:
            raise NotFound(f"content {digest}: blob missing from the store") from None

    # -- ingests --

    def _status(self, key: str, path: str) -> Status:
        try:
            offset = os.stat(os.path.join(path, "data")).st_size
            total = int(_read_text(os.path.join(path, "total")) or 0)
            started = int(_read_text(os.path.join(path, "startedat")))
            updated = int(_read_text(os.path.join(path, "updatedat")) or started)
        except FileNotFoundError:
            raise NotFound(f"ingest {key.split('/', 1)[1]} not found") from None
        except ValueError:
            raise SystemFailure(f"ingest {key.split('/', 1)[1]}: corrupt status files") from None
        return Status(key.split("/", 1)[1], offset, total, started, updated)

    def status(self, ns: str, ref: str) -> Status:
        key = self._ingest_key(ns, ref)
        return self._status(key, self._ingest_path(key))

    def list_statuses(self, ns: str, *filters_: str) -> list[Status]:
        validate_namespace(ns)
        match = filters.parse(filters_)
        result = []
        for name in sorted(os.listdir(self._ingest)):
            if name.startswith("."):
                continue
            path = os.path.join(self._ingest, name)
            try:
                key = _read_text(os.path.join(path, "ref"))
                if not key.startswith(ns + "/"):
                    continue
                status = self._status(key, path)
            except (FileNotFoundError, NotFound):
                continue  # committed or aborted while we looked
            if match(filters.adaptor({"ref": status.ref}, {})):
                result.append(status)
        return result

    def abort(self, ns: str, ref: str) -> None:
        key = self._ingest_key(ns, ref)
        path = self._ingest_path(key)
        if not os.path.isdir(path):
            raise NotFound(f"ingest {ref} not found")
        shutil.rmtree(path)

    def _create_ingest(self, key: str, path: str, total: int) -> None:
        """Create the ingest directory complete or not at all: build it aside, then rename."""
        tmp = os.path.join(self._ingest, f".tmp-{os.path.basename(path)}-{os.getpid()}-{time.time_ns()}")
        try:
            os.mkdir(tmp, 0o700)
            now = str(time.time_ns())
            _write_small(os.path.join(tmp, "ref"), key)
            _write_small(os.path.join(tmp, "startedat"), now)
            _write_small(os.path.join(tmp, "updatedat"), now)
            _write_small(os.path.join(tmp, "total"), str(total))
            _write_small(os.path.join(tmp, "data"), "")
            os.rename(tmp, path)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                return  # another writer created it first; we resume it
            raise _os_error(f"start ingest {key.split('/', 1)[1]}", e) from None

    def writer(self, ns: str, ref: str, total: int = 0, expected: str = "") -> LocalWriter:
        key = self._ingest_key(ns, ref)
        if not isinstance(total, int) or total < 0:
            raise InvalidArgument("expected total size must be a non-negative integer")
        if expected:
            validate_digest(expected)
            with self._db.transaction() as db:
                if self._record(db, ns, expected) and os.path.exists(self.blob_path(expected)):
                    raise Conflict(f"content {expected} already exists")
        path = self._ingest_path(key)
        if not os.path.isdir(path):
            self._create_ingest(key, path, total)
        try:
            fd = os.open(os.path.join(path, "data"), os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise Conflict(f"ingest {ref} was committed or aborted meanwhile; retry") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise Conflict(f"ingest {ref} is locked by another writer") from None
            if _read_text(os.path.join(path, "ref")) != key:
                raise SystemFailure(f"ingest {ref}: ref file does not match its directory")
            stored_total = int(_read_text(os.path.join(path, "total")) or 0)
            if total and stored_total and total != stored_total:
                raise InvalidArgument(f"ingest {ref}: expected total {total} differs from status {stored_total}")
            if total and not stored_total:
                _write_small(os.path.join(path, "total"), str(total))
            # Resume: the digest so far is recomputed from the bytes on disk.
            hasher, offset = hashlib.sha256(), 0
            while chunk := os.pread(fd, _CHUNK, offset):
                hasher.update(chunk)
                offset += len(chunk)
            started = int(_read_text(os.path.join(path, "startedat")))
            return LocalWriter(self, ns, ref, path, fd, hasher, offset, total or stored_total, expected, started)
        except BaseException as e:
            os.close(fd)
            if isinstance(e, OSError):
                raise _os_error(f"open ingest {ref}", e) from None
            raise

    def _commit(self, w: LocalWriter, digest: str, labels: dict[str, str]) -> None:
        target = self.blob_path(digest)
        now = time.time_ns()
        with self._db.transaction() as db:
            record = self._record(db, w.ns, digest)
            if os.path.exists(target):
                # The bytes are in the store already (another namespace, or a crash between the
                # rename and the record); this namespace only needs its record.
                w.discard()
                if record:
                    raise Conflict(f"content {digest} already exists")
            else:
                try:
                    os.fchmod(w.fd, 0o444)
                    os.rename(os.path.join(w.path, "data"), target)
                    _fsync_dir(self._blobs)
                except OSError as e:
                    raise _os_error(f"commit {digest}", e) from None
                w.discard()
            self._db.ensure_namespace(db, w.ns)
            db.execute("INSERT OR REPLACE INTO content (namespace, digest, size, labels, created_at, updated_at) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       (w.ns, digest, os.stat(target).st_size, json.dumps(labels, sort_keys=True), now, now))


class LocalWriter:
    def __init__(self, store: LocalContentStore, ns: str, ref: str, path: str, fd: int,
                 hasher, offset: int, total: int, expected: str, started_at: int):
        self._store, self.ns, self.ref, self.path, self.fd = store, ns, ref, path, fd
        self._hasher, self._offset, self._total, self._expected = hasher, offset, total, expected
        self._started_at = started_at
        self._updated_at = time.time_ns()

    def _check_open(self) -> None:
        if self.fd < 0:
            raise Conflict(f"writer for ingest {self.ref} is closed")

    def write(self, data: bytes) -> int:
        self._check_open()
        view, written = memoryview(data), 0
        try:
            while written < len(view):
                written += os.pwrite(self.fd, view[written:], self._offset + written)
        except OSError as e:
            # Give back whatever part of this chunk landed, so data, offset and digest agree
            # and the ingest can be resumed or aborted.
            try:
                os.ftruncate(self.fd, self._offset)
            except OSError:
                pass
            raise _os_error(f"write ingest {self.ref} at offset {self._offset}", e) from None
        self._hasher.update(view)
        self._offset += written
        self._updated_at = time.time_ns()
        try:
            _write_small(os.path.join(self.path, "updatedat"), str(self._updated_at))
        except OSError:
            pass  # advisory timestamp only; a full disk must not fail a write that succeeded
        return written

    def digest(self) -> str:
        return "sha256:" + self._hasher.hexdigest()

    def status(self) -> Status:
        return Status(self.ref, self._offset, self._total, self._started_at, self._updated_at, self._expected)

    def truncate(self, size: int) -> None:
        self._check_open()
        if size != 0:
            raise InvalidArgument("an ingest can only be truncated to 0")
        os.ftruncate(self.fd, 0)
        self._hasher, self._offset = hashlib.sha256(), 0

    def commit(self, size: int = 0, expected: str = "", labels: dict[str, str] | None = None) -> None:
        self._check_open()
        labels = validate_labels(labels)
        expected = expected or self._expected
        if expected:
            validate_digest(expected)
        try:
            os.fsync(self.fd)
        except OSError as e:
            raise _os_error(f"commit ingest {self.ref}", e) from None
        if os.fstat(self.fd).st_size != self._offset:
            raise SystemFailure(f"ingest {self.ref} changed size underneath its writer")
        if size and size != self._offset:
            raise InvalidArgument(f"unexpected commit size {self._offset}, expected {size}")
        digest = self.digest()
        if expected and expected != digest:
            raise InvalidArgument(f"unexpected commit digest {digest}, expected {expected}")
        self._store._commit(self, digest, labels)

    def discard(self) -> None:
        """After a commit: drop the ingest directory and the lock."""
        shutil.rmtree(self.path, ignore_errors=True)
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> LocalWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
