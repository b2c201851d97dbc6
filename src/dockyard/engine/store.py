"""The engine's container records: engine.db (SQLite, WAL; `dockyard/database.py`) holding, per
container, what dockerd keeps in its `config.v2.json` and `hostconfig.json`: the Docker Config and
HostConfig as created, the State (engine/state.py), names, the image, paths, the restart count.

dockyard-containerd knows a container only as a runtime spec and a snapshot; everything the
Engine API shows about it lives here. Records are cached in memory (the daemon is their only
writer) and every change is written through in one transaction, so a SIGKILL leaves the last
saved state.

Lookups follow dockerd's `GetContainer`: the full id, then the name (with or without the leading
"/"), then a unique id prefix; an ambiguous prefix is a 400 as in moby ("multiple IDs found with
provided prefix"), anything else "No such container: x" (404).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field

from dockyard.database import Database
from dockyard.engine.state import State
from dockyard.errors import Conflict, InvalidArgument, NotFound

MIGRATIONS: list[tuple[str, ...]] = [
    (
        """CREATE TABLE containers (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created TEXT NOT NULL,
            image TEXT NOT NULL,
            image_id TEXT NOT NULL,
            path TEXT NOT NULL,
            args TEXT NOT NULL CHECK (json_valid(args)),
            config TEXT NOT NULL CHECK (json_valid(config)),
            host_config TEXT NOT NULL CHECK (json_valid(host_config)),
            state TEXT NOT NULL CHECK (json_valid(state)),
            network_settings TEXT NOT NULL CHECK (json_valid(network_settings)),
            mounts TEXT NOT NULL CHECK (json_valid(mounts)),
            log_path TEXT NOT NULL,
            restart_count INTEGER NOT NULL DEFAULT 0,
            manually_stopped INTEGER NOT NULL DEFAULT 0,
            extra TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(extra)))""",
    ),
]

_COLUMNS = ("id", "name", "created", "image", "image_id", "path", "args", "config", "host_config",
            "state", "network_settings", "mounts", "log_path", "restart_count", "manually_stopped", "extra")


def conflict_name(name: str, holder: str) -> Conflict:
    return Conflict(f'Conflict. The container name "/{name}" is already in use by container "{holder}". '
                    "You have to remove (or rename) that container to be able to reuse that name.")


@dataclass
class Container:
    """One container as the engine knows it. `name` is kept without the leading "/";
    `created` is RFC 3339 with nanoseconds (inspect's `Created`)."""
    id: str
    name: str
    created: str
    image: str                      # the reference as given to create
    image_id: str                   # "sha256:…"
    path: str                       # the process's first argument (inspect Path)
    args: list[str]                 # the rest (inspect Args)
    config: dict                    # Docker ContainerConfig
    host_config: dict               # Docker HostConfig
    state: State = field(default_factory=State)
    network_settings: dict = field(default_factory=dict)
    mounts: list = field(default_factory=list)  # MountPoint list
    log_path: str = ""
    restart_count: int = 0
    manually_stopped: bool = False  # stopped by a user: unless-stopped does not restart it
    extra: dict = field(default_factory=dict)  # small engine bookkeeping (e.g. the spec's paths)

    def _row(self) -> tuple:
        return (self.id, self.name, self.created, self.image, self.image_id, self.path,
                json.dumps(self.args), json.dumps(self.config), json.dumps(self.host_config),
                json.dumps(self.state.to_dict()), json.dumps(self.network_settings),
                json.dumps(self.mounts), self.log_path, self.restart_count, int(self.manually_stopped),
                json.dumps(self.extra))

    @classmethod
    def _from_row(cls, row: sqlite3.Row | tuple) -> "Container":
        (cid, name, created, image, image_id, path, args, config, host_config, state, network_settings,
         mounts, log_path, restart_count, manually_stopped, extra) = row
        return cls(id=cid, name=name, created=created, image=image, image_id=image_id, path=path,
                   args=json.loads(args), config=json.loads(config), host_config=json.loads(host_config),
                   state=State.from_dict(json.loads(state)), network_settings=json.loads(network_settings),
                   mounts=json.loads(mounts), log_path=log_path, restart_count=restart_count,
                   manually_stopped=bool(manually_stopped), extra=json.loads(extra))


class Store:
    """engine.db and its in-memory cache. A daemon component (`Store(daemon)`), or opened on a
    path directly (`Store(path=…)`, for tests and tools)."""

    def __init__(self, daemon=None, *, path: str | None = None):
        self.path = path or daemon.config.engine_db
        self._db: Database | None = None
        self._by_id: dict[str, Container] = {}
        self._by_name: dict[str, str] = {}
        self._reserved: dict[str, str] = {}  # names held by containers being created
        self.open()

    def open(self) -> None:
        if self._db is not None:
            return
        self._db = Database(self.path, MIGRATIONS)
        with self._db.transaction() as db:
            rows = db.execute(f"SELECT {', '.join(_COLUMNS)} FROM containers").fetchall()
        for row in rows:
            c = Container._from_row(row)
            self._by_id[c.id] = c
            self._by_name[c.name] = c.id

    async def start(self) -> None:
        self.open()

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- lookups -----------------------------------------------------------------------------------

    def get(self, ref: str) -> Container:
        """By full id, name ("x" or "/x"), or unique id prefix."""
        if not ref:
            raise NotFound("No such container: ")
        c = self._by_id.get(ref)
        if c is not None:
            return c
        cid = self._by_name.get(ref[1:] if ref.startswith("/") else ref)
        if cid is not None:
            return self._by_id[cid]
        ref_lower = ref.lower()
        if all(ch in "0123456789abcdef" for ch in ref_lower):
            found = [i for i in self._by_id if i.startswith(ref_lower)]
            if len(found) > 1:
                raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
            if found:
                return self._by_id[found[0]]
        raise NotFound(f"No such container: {ref}")

    def find(self, ref: str) -> Container | None:
        try:
            return self.get(ref)
        except NotFound:
            return None

    def by_name(self, name: str) -> Container | None:
        cid = self._by_name.get(name[1:] if name.startswith("/") else name)
        return self._by_id.get(cid) if cid else None

    def list(self) -> list[Container]:
        """Every container, newest first (as `docker ps` orders them)."""
        return sorted(self._by_id.values(), key=lambda c: c.created, reverse=True)

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, cid: str) -> bool:
        return cid in self._by_id

    # -- changes -----------------------------------------------------------------------------------

    def reserve(self, name: str, cid: str) -> None:
        """Holds `name` for the container `cid` being created (Conflict if taken), so two
        creates racing for one name cannot both pass; `add` takes the reservation over."""
        holder = self._by_name.get(name) or self._reserved.get(name)
        if holder is not None and holder != cid:
            raise conflict_name(name, holder)
        self._reserved[name] = cid

    def release(self, name: str, cid: str) -> None:
        if self._reserved.get(name) == cid:
            del self._reserved[name]

    def add(self, c: Container) -> None:
        """A new container; its name is taken here, atomically (Conflict if taken)."""
        holder = self._by_name.get(c.name) or self._reserved.get(c.name)
        if holder is not None and holder != c.id:
            raise conflict_name(c.name, holder)
        if c.id in self._by_id:
            raise Conflict(f"container {c.id} exists already")
        with self._db.transaction() as db:
            db.execute(f"INSERT INTO containers ({', '.join(_COLUMNS)}) VALUES "
                       f"({', '.join('?' * len(_COLUMNS))})", c._row())
        self._by_id[c.id] = c
        self._by_name[c.name] = c.id
        self.release(c.name, c.id)

    def save(self, c: Container) -> None:
        """Writes `c` (a record from this store, changed in place) through."""
        if self._by_id.get(c.id) is not c:
            raise NotFound(f"No such container: {c.id}")
        with self._db.transaction() as db:
            db.execute(f"UPDATE containers SET {', '.join(f'{k} = ?' for k in _COLUMNS[1:])} WHERE id = ?",
                       (*c._row()[1:], c.id))

    def rename(self, c: Container, new_name: str) -> None:
        holder = self._by_name.get(new_name) or self._reserved.get(new_name)
        if holder is not None:
            raise conflict_name(new_name, holder)
        old = c.name
        c.name = new_name
        try:
            self.save(c)
        except BaseException:
            c.name = old
            raise
        del self._by_name[old]
        self._by_name[new_name] = c.id

    def delete(self, c: Container) -> None:
        with self._db.transaction() as db:
            db.execute("DELETE FROM containers WHERE id = ?", (c.id,))
        self._by_id.pop(c.id, None)
        if self._by_name.get(c.name) == c.id:
            del self._by_name[c.name]

    def taken(self, name: str) -> bool:
        return name in self._by_name or name in self._reserved
