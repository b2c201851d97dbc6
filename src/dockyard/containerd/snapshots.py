"""Snapshotters: layered filesystems for images and containers, and the overlayfs one
(runtime-and-containerd.md §4.6; containerd `core/snapshots/snapshotter.go`,
`plugins/snapshots/overlay/overlay.go`).

Vocabulary, as containerd's contract defines it:
- A **committed** snapshot is immutable and named; it may be the parent of others. Image layers
  are committed snapshots named by chain ID.
- An **active** snapshot is a writable layer over an optional committed parent, made by
  `prepare(key, parent)`; `commit(name, key)` turns it into a committed snapshot `name`.
- A **view** is a read-only look at a parent, made by `view(key, parent)`; it is never committed.

Worked example (unpacking two layers, then running a container):

    prepare("extract-1", "")          → bind mount of an empty dir; apply layer 1 into it
    commit("sha256:L1", "extract-1")
    prepare("extract-2", "sha256:L1") → overlay lowerdir=L1; apply layer 2 (whiteouts allowed)
    commit("sha256:L2", "extract-2")  (L2's name is the chain ID of layers 1..2)
    prepare("ctr-rootfs", "sha256:L2")→ overlay lowerdir=L2:L1, upperdir, workdir

Every key lives in a namespace; a parent is looked up in the same namespace. The overlay
snapshotter keeps its own SQLite metadata at `<root>/metadata.db` and each snapshot's files at
`<root>/<id>/fs` (the layer's contents, overlay's upperdir for active ones) and `<root>/<id>/work`
(overlay's workdir, active only). Directories whose id is not in the metadata are leftovers of a
crash or of a removal that could not finish; `cleanup()` removes them.
"""

from __future__ import annotations

import enum
import errno
import json
import logging
import os
import shutil
import stat
import time
from dataclasses import dataclass, field
from typing import Protocol

from dockyard.database import Database
from dockyard.errors import Conflict, NotFound, SystemFailure
from dockyard.linux import mount as m

from . import filters
from .identifiers import apply_label_update, validate_key, validate_labels, validate_namespace

log = logging.getLogger(__name__)

MIGRATIONS: list[tuple[str, ...]] = [
    (
        # parent REFERENCES … (RESTRICT by default): a snapshot with children cannot be deleted.
        """CREATE TABLE snapshots (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            namespace TEXT NOT NULL,
            key TEXT NOT NULL,
            parent INTEGER REFERENCES snapshots(id),
            kind TEXT NOT NULL CHECK (kind IN ('View', 'Active', 'Committed')),
            labels TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(labels)),
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            size INTEGER NOT NULL DEFAULT 0,
            inodes INTEGER NOT NULL DEFAULT 0,
            UNIQUE (namespace, key))""",
        "CREATE INDEX snapshots_by_parent ON snapshots(parent)",
    ),
]


class Kind(str, enum.Enum):
    VIEW = "View"
    ACTIVE = "Active"
    COMMITTED = "Committed"


@dataclass(frozen=True)
class Info:
    name: str
    kind: Kind
    parent: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0


@dataclass(frozen=True)
class Usage:
    size: int  # bytes of disk in use (st_blocks × 512, hard links counted once)
    inodes: int


@dataclass(frozen=True)
class Mount:
    """A mount to perform, as containerd's `mount.Mount`; `mount_all` carries it out."""
    type: str
    source: str
    options: list[str] = field(default_factory=list)


class Snapshotter(Protocol):
    def stat(self, ns: str, key: str) -> Info: ...
    def update(self, ns: str, key: str, labels: dict[str, str], fieldpaths: list[str] | None = None) -> Info: ...
    def usage(self, ns: str, key: str) -> Usage: ...
    def mounts(self, ns: str, key: str) -> list[Mount]: ...
    def prepare(self, ns: str, key: str, parent: str = "", labels: dict[str, str] | None = None) -> list[Mount]: ...
    def view(self, ns: str, key: str, parent: str = "", labels: dict[str, str] | None = None) -> list[Mount]: ...
    def commit(self, ns: str, name: str, key: str, labels: dict[str, str] | None = None) -> None: ...
    def remove(self, ns: str, key: str) -> None: ...
    def list(self, ns: str, *filters: str) -> list[Info]: ...
    def cleanup(self) -> None: ...
    # Not in containerd's interface (there the metadata layer namespaces one shared backend;
    # here the backend is namespaced itself): which namespaces hold snapshots, for the GC.
    def namespaces(self) -> list[str]: ...


def disk_usage(path: str) -> Usage:
    """What `du` would say: blocks in use and inodes, each inode once, not crossing mounts."""
    st = os.lstat(path)
    root_dev = st.st_dev
    seen = {(st.st_dev, st.st_ino)}
    size, inodes = st.st_blocks * 512, 1
    stack = [path]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                size += st.st_blocks * 512
                inodes += 1
                if stat.S_ISDIR(st.st_mode) and st.st_dev == root_dev:
                    stack.append(entry.path)
    return Usage(size, inodes)


def _mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f]


def _has_mounts(path: str) -> bool:
    prefix = path.rstrip("/") + "/"
    return any(p == path or p.startswith(prefix) for p in _mount_points())


class OverlaySnapshotter:
    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        self._db = Database(os.path.join(self.root, "metadata.db"), MIGRATIONS)
        # containerd adds index=off when the kernel knows the option, so a lower directory
        # reused by several overlays never trips the inode index (overlay.go supportsIndex).
        self._options = ["index=off"] if os.path.exists("/sys/module/overlay/parameters/index") else []

    def close(self) -> None:
        self._db.close()

    def _dir(self, id_: int, *sub: str) -> str:
        return os.path.join(self.root, str(id_), *sub)

    def _row(self, db, ns: str, key: str):
        validate_namespace(ns)
        validate_key(key)
        row = db.execute("SELECT id, parent, kind, labels, created_at, updated_at, size, inodes "
                         "FROM snapshots WHERE namespace = ? AND key = ?", (ns, key)).fetchone()
        if row is None:
            raise NotFound(f"snapshot {key} not found in namespace {ns}")
        return row

    def _info(self, db, ns: str, key: str, row) -> Info:
        _, parent, kind, labels, created, updated, _, _ = row
        parent_key = db.execute("SELECT key FROM snapshots WHERE id = ?", (parent,)).fetchone()[0] if parent else ""
        return Info(key, Kind(kind), parent_key, json.loads(labels), created, updated)

    def _parent_ids(self, db, parent: int | None) -> list[int]:
        """The chain of ancestors, nearest first."""
        ids = []
        while parent is not None:
            ids.append(parent)
            parent = db.execute("SELECT parent FROM snapshots WHERE id = ?", (parent,)).fetchone()[0]
        return ids

    def _mounts(self, db, id_: int, kind: Kind, parent: int | None) -> list[Mount]:
        # overlay.go mounts(): bind when there is no parent; a view of a single parent binds
        # that parent read-only; otherwise overlay, lowerdir nearest parent first.
        parents = self._parent_ids(db, parent)
        if not parents:
            return [Mount("bind", self._dir(id_, "fs"), ["ro" if kind is Kind.VIEW else "rw", "rbind"])]
        options = []
        if kind is Kind.ACTIVE:
            options += [f"workdir={self._dir(id_, 'work')}", f"upperdir={self._dir(id_, 'fs')}"]
        elif len(parents) == 1:
            return [Mount("bind", self._dir(parents[0], "fs"), ["ro", "rbind"])]
        options.append("lowerdir=" + ":".join(self._dir(p, "fs") for p in parents))
        return [Mount("overlay", "overlay", options + self._options)]

    def stat(self, ns: str, key: str) -> Info:
        with self._db.transaction() as db:
            return self._info(db, ns, key, self._row(db, ns, key))

    def update(self, ns: str, key: str, labels: dict[str, str], fieldpaths: list[str] | None = None) -> Info:
        with self._db.transaction() as db:
            row = self._row(db, ns, key)
            new = apply_label_update(json.loads(row[3]), labels, fieldpaths)
            db.execute("UPDATE snapshots SET labels = ?, updated_at = ? WHERE id = ?",
                       (json.dumps(new, sort_keys=True), time.time_ns(), row[0]))
            return self._info(db, ns, key, self._row(db, ns, key))

    def usage(self, ns: str, key: str) -> Usage:
        with self._db.transaction() as db:
            id_, _, kind, _, _, _, size, inodes = self._row(db, ns, key)
        if kind == Kind.ACTIVE:
            return disk_usage(self._dir(id_, "fs"))
        if kind == Kind.VIEW:
            return Usage(0, 0)  # a view has no layer of its own
        if size < 0:
            # Committed layers are immutable, so their usage is walked once, on first ask, and
            # kept; commit itself does not walk (a 50,000-file layer would hold up every pull).
            usage = disk_usage(self._dir(id_, "fs"))
            with self._db.transaction() as db:
                db.execute("UPDATE snapshots SET size = ?, inodes = ? WHERE id = ?", (usage.size, usage.inodes, id_))
            return usage
        return Usage(size, inodes)

    def mounts(self, ns: str, key: str) -> list[Mount]:
        with self._db.transaction() as db:
            id_, parent, kind, *_ = self._row(db, ns, key)
            if kind == Kind.COMMITTED:
                raise Conflict(f"snapshot {key} is committed: only active snapshots and views have mounts")
            return self._mounts(db, id_, Kind(kind), parent)

    def prepare(self, ns: str, key: str, parent: str = "", labels: dict[str, str] | None = None) -> list[Mount]:
        return self._create(ns, Kind.ACTIVE, key, parent, labels)

    def view(self, ns: str, key: str, parent: str = "", labels: dict[str, str] | None = None) -> list[Mount]:
        return self._create(ns, Kind.VIEW, key, parent, labels)

    def _create(self, ns: str, kind: Kind, key: str, parent: str, labels: dict[str, str] | None) -> list[Mount]:
        validate_namespace(ns)
        validate_key(key)
        labels = validate_labels(labels)
        now = time.time_ns()
        with self._db.transaction() as db:
            if db.execute("SELECT 1 FROM snapshots WHERE namespace = ? AND key = ?", (ns, key)).fetchone():
                raise Conflict(f"snapshot {key} already exists in namespace {ns}")
            parent_id = None
            if parent:
                parent_id, _, parent_kind, *_ = self._row(db, ns, parent)
                if parent_kind != Kind.COMMITTED:
                    raise Conflict(f"parent snapshot {parent} is not committed")
            id_ = db.execute("INSERT INTO snapshots (namespace, key, parent, kind, labels, created_at, updated_at) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (ns, key, parent_id, kind.value, json.dumps(labels, sort_keys=True), now, now)).lastrowid
            # Directories are built aside and renamed into place inside the transaction: a crash
            # leaves either nothing, or a directory whose id is not committed (cleanup's job).
            target = self._dir(id_)
            if os.path.lexists(target):  # an id from a rolled-back transaction, reused
                self._remove_dir(target)
            tmp = os.path.join(self.root, f"new-{id_}-{os.getpid()}")
            try:
                os.mkdir(tmp, 0o700)
                os.mkdir(os.path.join(tmp, "fs"), 0o755)
                if kind is Kind.ACTIVE:
                    os.mkdir(os.path.join(tmp, "work"), 0o700)
                os.rename(tmp, target)
            except OSError as e:
                shutil.rmtree(tmp, ignore_errors=True)
                raise SystemFailure(f"create snapshot {key}: {e.strerror or e}") from None
            return self._mounts(db, id_, kind, parent_id)

    def commit(self, ns: str, name: str, key: str, labels: dict[str, str] | None = None) -> None:
        validate_key(name, "snapshot name")
        labels = validate_labels(labels)
        with self._db.transaction() as db:
            id_, _, kind, *_ = self._row(db, ns, key)
            if kind != Kind.ACTIVE:
                raise Conflict(f"snapshot {key} is not active: only active snapshots can be committed")
            if db.execute("SELECT 1 FROM snapshots WHERE namespace = ? AND key = ?", (ns, name)).fetchone():
                raise Conflict(f"snapshot {name} already exists in namespace {ns}")
            # size -1: not walked yet (see usage()).
            db.execute("UPDATE snapshots SET key = ?, kind = 'Committed', labels = ?, size = -1, inodes = -1, "
                       "updated_at = ? WHERE id = ?",
                       (name, json.dumps(labels, sort_keys=True), time.time_ns(), id_))

    def remove(self, ns: str, key: str) -> None:
        with self._db.transaction() as db:
            id_ = self._row(db, ns, key)[0]
            if db.execute("SELECT 1 FROM snapshots WHERE parent = ? LIMIT 1", (id_,)).fetchone():
                raise Conflict(f"cannot remove snapshot {key}: it has children")
            db.execute("DELETE FROM snapshots WHERE id = ?", (id_,))
        # After the commit: a crash or failure here leaves an orphan directory for cleanup().
        try:
            self._remove_dir(self._dir(id_))
        except SystemFailure as e:
            log.warning("level=warning msg=\"snapshot directory left for cleanup\" key=%s error=%r", key, str(e))

    def list(self, ns: str, *filters_: str) -> list[Info]:
        validate_namespace(ns)
        match = filters.parse(filters_)
        with self._db.transaction() as db:
            rows = db.execute("SELECT s.key, s.kind, COALESCE(p.key, ''), s.labels, s.created_at, s.updated_at "
                              "FROM snapshots s LEFT JOIN snapshots p ON s.parent = p.id "
                              "WHERE s.namespace = ? ORDER BY s.id", (ns,)).fetchall()
        infos = [Info(k, Kind(kind), p, json.loads(lb), c, u) for k, kind, p, lb, c, u in rows]
        return [i for i in infos
                if match(filters.adaptor({"name": i.name, "parent": i.parent, "kind": i.kind.value}, i.labels))]

    def namespaces(self) -> list[str]:
        """Namespaces that hold snapshots, for the garbage collector."""
        with self._db.transaction() as db:
            return [r[0] for r in db.execute("SELECT DISTINCT namespace FROM snapshots ORDER BY 1")]

    def cleanup(self) -> None:
        """Remove every directory that is not a snapshot in the metadata (containerd Cleanup)."""
        with self._db.transaction() as db:
            ids = {str(r[0]) for r in db.execute("SELECT id FROM snapshots")}
            for name in os.listdir(self.root):
                path = os.path.join(self.root, name)
                if name in ids or not os.path.isdir(path) or os.path.islink(path):
                    continue
                try:
                    self._remove_dir(path)
                except SystemFailure:
                    continue  # still mounted somewhere: left for the next cleanup

    def _remove_dir(self, path: str) -> None:
        # rmtree descends into whatever is mounted below; refuse rather than empty someone's mount.
        if _has_mounts(path):
            raise SystemFailure(f"{path} has mounts below it; not removing")
        try:
            shutil.rmtree(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise SystemFailure(f"remove {path}: {e.strerror or e}") from None


def read_only_mounts(mounts: list[Mount]) -> list[Mount]:
    """The same filesystem, read-only and without an upper directory: an overlay's upperdir
    becomes its top lower layer (whiteouts in it still hide what they hide), so a running
    container's upper and work directories are never mounted a second time."""
    out = []
    for mnt in mounts:
        if mnt.type == "overlay":
            options = [o for o in mnt.options if not o.startswith(("upperdir=", "workdir="))]
            upper = next((o[len("upperdir="):] for o in mnt.options if o.startswith("upperdir=")), "")
            if upper:
                options = [f"lowerdir={upper}:{o[len('lowerdir='):]}" if o.startswith("lowerdir=") else o
                           for o in options]
            out.append(Mount(mnt.type, mnt.source, [o for o in options if o != "rw"] + ["ro"]))
        else:
            out.append(Mount(mnt.type, mnt.source, [o for o in mnt.options if o != "rw"] + ["ro"]))
    return out


def mount_all(mounts: list[Mount], target: str) -> None:
    """Mount each of `mounts` on `target`, in order (stacked, as containerd's mount.All). On
    failure, whatever was mounted is unmounted again."""
    done = 0
    try:
        for mnt in mounts:
            flags, propagation, data = m.parse_options(list(mnt.options))
            if mnt.type == "bind":
                m.mount(mnt.source, target, None, flags | m.MS_BIND, data)
                if flags & m.MS_RDONLY:
                    # The kernel ignores MS_RDONLY on the bind itself; read-only takes a remount.
                    m.mount(None, target, None, (flags & ~m.MS_REC) | m.MS_BIND | m.MS_REMOUNT, None)
            else:
                m.mount(mnt.source, target, mnt.type, flags, data)
            done += 1
            for p in propagation:
                m.mount(None, target, None, p, None)
    except OSError as e:
        for _ in range(done):
            m.umount(target, m.MNT_DETACH)
        raise SystemFailure(f"mount {mnt.type} on {target}: {e.strerror or e}") from None


def unmount_all(target: str, attempts: int = 50) -> None:
    """Unmount everything stacked on `target` (containerd mount.UnmountAll)."""
    for _ in range(attempts):
        try:
            m.umount(target, m.UMOUNT_NOFOLLOW)
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.ENOENT):
                return  # nothing (more) mounted there
            if e.errno != errno.EBUSY:
                raise SystemFailure(f"unmount {target}: {e.strerror or e}") from None
            time.sleep(0.02)
    raise SystemFailure(f"unmount {target}: still busy after {attempts} attempts")
