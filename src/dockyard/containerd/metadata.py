"""The metadata database: namespaces, containers, images, leases and per-namespace content
records, in SQLite at `<root>/meta.db` (runtime-and-containerd.md §4.7, containerd
`core/metadata`).

Every object lives in a namespace (§4.9); the content store's blobs and the snapshotter's
snapshots are shared backends with their own storage, and the records here are each namespace's
view of them. One SQLite transaction per change, WAL journal, foreign keys on: a SIGKILL at any
instant leaves either the old or the new state. The schema is versioned (`schema_version`) and
moved forward by `MIGRATIONS`, never backward.

Timestamps are integers, nanoseconds since the epoch.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from dockyard.database import Database
from dockyard.errors import Conflict, InvalidArgument, NotFound

from . import filters
from .identifiers import (apply_label_update, validate_digest, validate_identifier, validate_key,
                          validate_labels, validate_namespace, validate_ref)

# Forward migrations: MIGRATIONS[i] takes the schema from version i to i + 1.
MIGRATIONS: list[tuple[str, ...]] = [
    (
        """CREATE TABLE namespaces (
            name TEXT PRIMARY KEY,
            labels TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(labels)),
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL)""",
        """CREATE TABLE containers (
            namespace TEXT NOT NULL REFERENCES namespaces(name),
            id TEXT NOT NULL,
            image TEXT NOT NULL DEFAULT '',
            runtime_name TEXT NOT NULL,
            runtime_options TEXT CHECK (runtime_options IS NULL OR json_valid(runtime_options)),
            spec TEXT NOT NULL CHECK (json_valid(spec)),
            snapshotter TEXT NOT NULL DEFAULT '',
            snapshot_key TEXT NOT NULL DEFAULT '',
            labels TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(labels)),
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (namespace, id))""",
        """CREATE TABLE images (
            namespace TEXT NOT NULL REFERENCES namespaces(name),
            name TEXT NOT NULL,
            media_type TEXT NOT NULL,
            digest TEXT NOT NULL,
            size INTEGER NOT NULL CHECK (size >= 0),
            annotations TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(annotations)),
            labels TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(labels)),
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (namespace, name))""",
        """CREATE TABLE leases (
            namespace TEXT NOT NULL REFERENCES namespaces(name),
            id TEXT NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(labels)),
            created_at INTEGER NOT NULL,
            PRIMARY KEY (namespace, id))""",
        """CREATE TABLE lease_resources (
            namespace TEXT NOT NULL,
            lease TEXT NOT NULL,
            type TEXT NOT NULL,
            id TEXT NOT NULL,
            PRIMARY KEY (namespace, lease, type, id),
            FOREIGN KEY (namespace, lease) REFERENCES leases(namespace, id) ON DELETE CASCADE)""",
        """CREATE TABLE content (
            namespace TEXT NOT NULL REFERENCES namespaces(name),
            digest TEXT NOT NULL,
            size INTEGER NOT NULL CHECK (size >= 0),
            labels TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(labels)),
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (namespace, digest))""",
        "CREATE INDEX content_by_digest ON content(digest)",
    ),
]


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor (image-spec descriptor.md)."""
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RuntimeInfo:
    name: str
    options: Any = None  # JSON-serialisable runtime options


@dataclass(frozen=True)
class Container:
    id: str
    runtime: RuntimeInfo
    spec: dict
    image: str = ""
    snapshotter: str = ""
    snapshot_key: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0


@dataclass(frozen=True)
class Image:
    name: str
    target: Descriptor
    labels: dict[str, str] = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0


@dataclass(frozen=True)
class Lease:
    id: str
    labels: dict[str, str] = field(default_factory=dict)
    created_at: int = 0


@dataclass(frozen=True)
class Resource:
    """What a lease holds: type `content` (id a digest), `snapshots/<snapshotter>` (id a
    snapshot key) or `ingests` (id an ingest ref)."""
    id: str
    type: str


class Namespaces(Protocol):
    def create(self, name: str, labels: dict[str, str] | None = None) -> Namespace: ...
    def get(self, name: str) -> Namespace: ...
    def list(self) -> list[Namespace]: ...
    def update(self, name: str, labels: dict[str, str], fieldpaths: list[str] | None = None) -> Namespace: ...
    def delete(self, name: str) -> None: ...


class Containers(Protocol):
    def get(self, ns: str, id: str) -> Container: ...
    def list(self, ns: str, *filters: str) -> list[Container]: ...
    def create(self, ns: str, container: Container) -> Container: ...
    def update(self, ns: str, container: Container, fieldpaths: list[str] | None = None) -> Container: ...
    def delete(self, ns: str, id: str) -> None: ...


class Images(Protocol):
    def get(self, ns: str, name: str) -> Image: ...
    def list(self, ns: str, *filters: str) -> list[Image]: ...
    def create(self, ns: str, image: Image) -> Image: ...
    def update(self, ns: str, image: Image, fieldpaths: list[str] | None = None) -> Image: ...
    def delete(self, ns: str, name: str) -> None: ...


class Leases(Protocol):
    def create(self, ns: str, id: str = "", labels: dict[str, str] | None = None) -> Lease: ...
    def list(self, ns: str, *filters: str) -> list[Lease]: ...
    def delete(self, ns: str, id: str) -> None: ...
    def add_resource(self, ns: str, id: str, resource: Resource) -> None: ...
    def delete_resource(self, ns: str, id: str, resource: Resource) -> None: ...
    def list_resources(self, ns: str, id: str) -> list[Resource]: ...


def _now() -> int:
    return time.time_ns()


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class MetadataDB(Database):
    """The metadata database; the services below share one instance (`db.containers`, …)."""

    def __init__(self, root: str):
        os.makedirs(root, mode=0o710, exist_ok=True)
        super().__init__(os.path.join(root, "meta.db"), MIGRATIONS)
        self.namespaces = LocalNamespaces(self)
        self.containers = LocalContainers(self)
        self.images = LocalImages(self)
        self.leases = LocalLeases(self)

    def ensure_namespace(self, db: sqlite3.Connection, ns: str) -> None:
        """Writes into a namespace create it, as containerd's metadata store does."""
        validate_namespace(ns)
        now = _now()
        db.execute("INSERT OR IGNORE INTO namespaces (name, created_at, updated_at) VALUES (?, ?, ?)",
                   (ns, now, now))


class LocalNamespaces:
    def __init__(self, db: MetadataDB):
        self._db = db

    def create(self, name: str, labels: dict[str, str] | None = None) -> Namespace:
        validate_namespace(name)
        labels = validate_labels(labels)
        now = _now()
        with self._db.transaction() as db:
            if db.execute("SELECT 1 FROM namespaces WHERE name = ?", (name,)).fetchone():
                raise Conflict(f"namespace {name} already exists")
            db.execute("INSERT INTO namespaces (name, labels, created_at, updated_at) VALUES (?, ?, ?, ?)",
                       (name, _dumps(labels), now, now))
        return Namespace(name, labels)

    def get(self, name: str) -> Namespace:
        validate_namespace(name)
        with self._db.transaction() as db:
            row = db.execute("SELECT labels FROM namespaces WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"namespace {name} not found")
        return Namespace(name, json.loads(row[0]))

    def list(self) -> list[Namespace]:
        with self._db.transaction() as db:
            rows = db.execute("SELECT name, labels FROM namespaces ORDER BY name").fetchall()
        return [Namespace(n, json.loads(lb)) for n, lb in rows]

    def update(self, name: str, labels: dict[str, str], fieldpaths: list[str] | None = None) -> Namespace:
        with self._db.transaction() as db:
            current = self.get(name)
            new = apply_label_update(current.labels, labels, fieldpaths)
            db.execute("UPDATE namespaces SET labels = ?, updated_at = ? WHERE name = ?",
                                   (_dumps(new), _now(), name))
        return Namespace(name, new)

    def delete(self, name: str) -> None:
        validate_namespace(name)
        with self._db.transaction() as db:
            if db.execute("SELECT 1 FROM namespaces WHERE name = ?", (name,)).fetchone() is None:
                raise NotFound(f"namespace {name} not found")
            for table in ("containers", "images", "leases", "content"):
                if db.execute(f"SELECT 1 FROM {table} WHERE namespace = ? LIMIT 1", (name,)).fetchone():
                    raise Conflict(f"namespace {name} must be empty, but it still has {table}")
            db.execute("DELETE FROM namespaces WHERE name = ?", (name,))


_CONTAINER_COLUMNS = ("id, image, runtime_name, runtime_options, spec, snapshotter, snapshot_key, "
                      "labels, created_at, updated_at")


def _container(row) -> Container:
    (id_, image, rname, ropts, spec, snapshotter, skey, labels, created, updated) = row
    return Container(id=id_, image=image,
                     runtime=RuntimeInfo(rname, None if ropts is None else json.loads(ropts)),
                     spec=json.loads(spec), snapshotter=snapshotter, snapshot_key=skey,
                     labels=json.loads(labels), created_at=created, updated_at=updated)


def _container_fields(c: Container) -> filters.Adaptor:
    return filters.adaptor({"id": c.id, "image": c.image, "runtime.name": c.runtime.name,
                            "snapshotter": c.snapshotter, "snapshotkey": c.snapshot_key}, c.labels)


def _validate_container(c: Container) -> None:
    validate_identifier(c.id, "container id")
    if not c.runtime or not c.runtime.name:
        raise InvalidArgument(f"container {c.id}: runtime name must be set")
    if not isinstance(c.spec, dict) or not c.spec:
        raise InvalidArgument(f"container {c.id}: spec must be set")
    if c.snapshot_key and not c.snapshotter:
        raise InvalidArgument(f"container {c.id}: snapshotter must be set if snapshot key is set")
    if c.snapshot_key:
        validate_key(c.snapshot_key)
    validate_labels(c.labels)


class LocalContainers:
    def __init__(self, db: MetadataDB):
        self._db = db

    def get(self, ns: str, id: str) -> Container:
        validate_namespace(ns)
        with self._db.transaction() as db:
            row = db.execute(f"SELECT {_CONTAINER_COLUMNS} FROM containers WHERE namespace = ? AND id = ?",
                             (ns, id)).fetchone()
        if row is None:
            raise NotFound(f"container {id} not found in namespace {ns}")
        return _container(row)

    def list(self, ns: str, *filters_: str) -> list[Container]:
        validate_namespace(ns)
        match = filters.parse(filters_)
        with self._db.transaction() as db:
            rows = db.execute(f"SELECT {_CONTAINER_COLUMNS} FROM containers WHERE namespace = ? ORDER BY id",
                              (ns,)).fetchall()
        return [c for c in map(_container, rows) if match(_container_fields(c))]

    def create(self, ns: str, container: Container) -> Container:
        _validate_container(container)
        now = _now()
        c = replace(container, labels=dict(container.labels), created_at=now, updated_at=now)
        with self._db.transaction() as db:
            self._db.ensure_namespace(db, ns)
            if db.execute("SELECT 1 FROM containers WHERE namespace = ? AND id = ?", (ns, c.id)).fetchone():
                raise Conflict(f"container {c.id} already exists in namespace {ns}")
            self._write(db, ns, c)
        return c

    @staticmethod
    def _write(db: sqlite3.Connection, ns: str, c: Container) -> None:
        db.execute(f"INSERT INTO containers (namespace, {_CONTAINER_COLUMNS}) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (ns, c.id, c.image, c.runtime.name,
                None if c.runtime.options is None else _dumps(c.runtime.options),
                _dumps(c.spec), c.snapshotter, c.snapshot_key, _dumps(c.labels), c.created_at, c.updated_at))

    def update(self, ns: str, container: Container, fieldpaths: list[str] | None = None) -> Container:
        with self._db.transaction() as db:
            current = self.get(ns, container.id)
            if not fieldpaths:
                # A full replace may not touch the immutable fields (containerd containers.go).
                if container.snapshotter != current.snapshotter:
                    raise InvalidArgument(f"container {container.id}: snapshotter is immutable")
                if container.runtime.name != current.runtime.name:
                    raise InvalidArgument(f"container {container.id}: runtime name is immutable")
                fieldpaths = ["labels", "spec", "image", "snapshotkey"]
            updated, label_paths = current, []
            for path in fieldpaths:
                if path == "labels" or path.startswith("labels."):
                    label_paths.append(path)
                elif path == "spec":
                    updated = replace(updated, spec=container.spec)
                elif path == "image":
                    updated = replace(updated, image=container.image)
                elif path == "snapshotkey":
                    updated = replace(updated, snapshot_key=container.snapshot_key)
                elif path in ("runtime", "snapshotter"):
                    raise InvalidArgument(f"container {container.id}: {path} is immutable")
                else:
                    raise InvalidArgument(f"container {container.id}: cannot update field {path!r}")
            if label_paths:
                updated = replace(updated, labels=apply_label_update(current.labels, container.labels, label_paths))
            updated = replace(updated, updated_at=_now())
            _validate_container(updated)
            db.execute("DELETE FROM containers WHERE namespace = ? AND id = ?", (ns, updated.id))
            self._write(db, ns, updated)
        return updated

    def delete(self, ns: str, id: str) -> None:
        validate_namespace(ns)
        with self._db.transaction() as db:
            if db.execute("DELETE FROM containers WHERE namespace = ? AND id = ?", (ns, id)).rowcount == 0:
                raise NotFound(f"container {id} not found in namespace {ns}")


def _image(row) -> Image:
    name, media_type, digest, size, annotations, labels, created, updated = row
    return Image(name, Descriptor(media_type, digest, size, json.loads(annotations)),
                 json.loads(labels), created, updated)


def _validate_image(image: Image) -> None:
    validate_key(image.name, "image name")
    t = image.target
    if not isinstance(t, Descriptor):
        raise InvalidArgument(f"image {image.name}: target must be a descriptor")
    validate_digest(t.digest)
    if not t.media_type:
        raise InvalidArgument(f"image {image.name}: target media type must be set")
    if not isinstance(t.size, int) or t.size < 0:
        raise InvalidArgument(f"image {image.name}: target size must be a non-negative integer")
    validate_labels(image.labels)


_IMAGE_COLUMNS = "name, media_type, digest, size, annotations, labels, created_at, updated_at"


class LocalImages:
    def __init__(self, db: MetadataDB):
        self._db = db

    def get(self, ns: str, name: str) -> Image:
        validate_namespace(ns)
        with self._db.transaction() as db:
            row = db.execute(f"SELECT {_IMAGE_COLUMNS} FROM images WHERE namespace = ? AND name = ?",
                             (ns, name)).fetchone()
        if row is None:
            raise NotFound(f"image {name} not found in namespace {ns}")
        return _image(row)

    def list(self, ns: str, *filters_: str) -> list[Image]:
        validate_namespace(ns)
        match = filters.parse(filters_)
        with self._db.transaction() as db:
            rows = db.execute(f"SELECT {_IMAGE_COLUMNS} FROM images WHERE namespace = ? ORDER BY name",
                              (ns,)).fetchall()
        return [i for i in map(_image, rows)
                if match(filters.adaptor({"name": i.name, "target.digest": i.target.digest,
                                          "target.mediatype": i.target.media_type}, i.labels))]

    def _write(self, db: sqlite3.Connection, ns: str, i: Image) -> None:
        db.execute(f"INSERT INTO images (namespace, {_IMAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (ns, i.name, i.target.media_type, i.target.digest, i.target.size,
                    _dumps(i.target.annotations), _dumps(i.labels), i.created_at, i.updated_at))

    def create(self, ns: str, image: Image) -> Image:
        _validate_image(image)
        now = _now()
        image = replace(image, created_at=now, updated_at=now)
        with self._db.transaction() as db:
            self._db.ensure_namespace(db, ns)
            if db.execute("SELECT 1 FROM images WHERE namespace = ? AND name = ?", (ns, image.name)).fetchone():
                raise Conflict(f"image {image.name} already exists in namespace {ns}")
            self._write(db, ns, image)
        return image

    def update(self, ns: str, image: Image, fieldpaths: list[str] | None = None) -> Image:
        with self._db.transaction() as db:
            current = self.get(ns, image.name)
            if not fieldpaths:
                updated = replace(image, created_at=current.created_at)
            else:
                updated, label_paths = current, []
                for path in fieldpaths:
                    if path == "labels" or path.startswith("labels."):
                        label_paths.append(path)
                    elif path == "target":
                        updated = replace(updated, target=image.target)
                    else:
                        raise InvalidArgument(f"image {image.name}: cannot update field {path!r}")
                if label_paths:
                    updated = replace(updated, labels=apply_label_update(current.labels, image.labels, label_paths))
            updated = replace(updated, updated_at=_now())
            _validate_image(updated)
            db.execute("DELETE FROM images WHERE namespace = ? AND name = ?", (ns, image.name))
            self._write(db, ns, updated)
        return updated

    def delete(self, ns: str, name: str) -> None:
        validate_namespace(ns)
        with self._db.transaction() as db:
            if db.execute("DELETE FROM images WHERE namespace = ? AND name = ?", (ns, name)).rowcount == 0:
                raise NotFound(f"image {name} not found in namespace {ns}")


def validate_resource(resource: Resource) -> None:
    if resource.type == "content":
        validate_digest(resource.id)
    elif resource.type == "ingests":
        validate_ref(resource.id)
    elif resource.type.startswith("snapshots/"):
        validate_identifier(resource.type[len("snapshots/"):], "snapshotter")
        validate_key(resource.id)
    else:
        raise InvalidArgument(f"unsupported lease resource type {resource.type[:64]!r}")


class LocalLeases:
    def __init__(self, db: MetadataDB):
        self._db = db

    def create(self, ns: str, id: str = "", labels: dict[str, str] | None = None) -> Lease:
        id = id or uuid.uuid4().hex
        validate_identifier(id, "lease id")
        lease = Lease(id, validate_labels(labels), _now())
        with self._db.transaction() as db:
            self._db.ensure_namespace(db, ns)
            if db.execute("SELECT 1 FROM leases WHERE namespace = ? AND id = ?", (ns, id)).fetchone():
                raise Conflict(f"lease {id} already exists in namespace {ns}")
            db.execute("INSERT INTO leases (namespace, id, labels, created_at) VALUES (?, ?, ?, ?)",
                       (ns, id, _dumps(lease.labels), lease.created_at))
        return lease

    def list(self, ns: str, *filters_: str) -> list[Lease]:
        validate_namespace(ns)
        match = filters.parse(filters_)
        with self._db.transaction() as db:
            rows = db.execute("SELECT id, labels, created_at FROM leases WHERE namespace = ? ORDER BY id",
                              (ns,)).fetchall()
        leases = [Lease(i, json.loads(lb), c) for i, lb, c in rows]
        return [x for x in leases if match(filters.adaptor({"id": x.id}, x.labels))]

    def delete(self, ns: str, id: str) -> None:
        validate_namespace(ns)
        with self._db.transaction() as db:
            if db.execute("DELETE FROM leases WHERE namespace = ? AND id = ?", (ns, id)).rowcount == 0:
                raise NotFound(f"lease {id} not found in namespace {ns}")

    def _require(self, db: sqlite3.Connection, ns: str, id: str) -> None:
        validate_namespace(ns)
        if db.execute("SELECT 1 FROM leases WHERE namespace = ? AND id = ?", (ns, id)).fetchone() is None:
            raise NotFound(f"lease {id} not found in namespace {ns}")

    def add_resource(self, ns: str, id: str, resource: Resource) -> None:
        validate_resource(resource)
        with self._db.transaction() as db:
            self._require(db, ns, id)
            db.execute("INSERT OR IGNORE INTO lease_resources (namespace, lease, type, id) VALUES (?, ?, ?, ?)",
                       (ns, id, resource.type, resource.id))

    def delete_resource(self, ns: str, id: str, resource: Resource) -> None:
        with self._db.transaction() as db:
            self._require(db, ns, id)
            db.execute("DELETE FROM lease_resources WHERE namespace = ? AND lease = ? AND type = ? AND id = ?",
                       (ns, id, resource.type, resource.id))

    def list_resources(self, ns: str, id: str) -> list[Resource]:
        with self._db.transaction() as db:
            self._require(db, ns, id)
            rows = db.execute("SELECT id, type FROM lease_resources WHERE namespace = ? AND lease = ? "
                              "ORDER BY type, id", (ns, id)).fetchall()
        return [Resource(i, t) for i, t in rows]

