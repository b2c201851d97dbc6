"""Garbage collection: tri-colour mark and sweep over content, snapshots and leases
(runtime-and-containerd.md §4.8; containerd `pkg/gc/gc.go` Tricolor, `core/metadata/gc.go`,
`docs/garbage-collection.md`).

Nodes are `(namespace, type, key)` with type `content`, `snapshots/<snapshotter>`, `image`,
`container` or `lease`. Roots: every image, every container, every lease that has not expired
(label `containerd.io/gc.expire`, RFC3339), and content or snapshots labelled `containerd.io/gc.root`.
Edges: image → target content; container → its snapshot; snapshot → parent; lease → its
resources; and on any object the labels `containerd.io/gc.ref.content[.<x>]=<digest>` and
`containerd.io/gc.ref.snapshot.<snapshotter>=<key>`. Content, snapshots and expired leases that
no root reaches are removed.

`mark` is pure and table-tested; `collect` builds the graph and sweeps while holding the metadata
write lock, so no container, image, lease or content record can change between mark and sweep.
Writers protect what they are making by adding it to a lease first (a lease may name content or
a snapshot that does not exist yet) — the content-flow order containerd's clients follow.
"""

from __future__ import annotations

import datetime
import logging
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping

from dockyard.errors import Conflict, NotFound

from .content import ContentStore
from .metadata import MetadataDB
from .snapshots import Snapshotter

log = logging.getLogger(__name__)

Node = tuple[str, str, str]  # (namespace, type, key)

LABEL_ROOT = "containerd.io/gc.root"
LABEL_EXPIRE = "containerd.io/gc.expire"
LABEL_REF_CONTENT = "containerd.io/gc.ref.content"
LABEL_REF_SNAPSHOT = "containerd.io/gc.ref.snapshot."

_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\d)[Tt](\d\d:\d\d:\d\d)(?:\.(\d+))?([Zz]|[+-]\d\d:\d\d)\Z")


def mark(roots: Iterable[Node], refs: Callable[[Node], Iterable[Node]]) -> set[Node]:
    """Tri-colour marking: white nodes are unseen, grey ones seen with references not yet
    followed, black ones done. Returns the black set — everything reachable from a root."""
    grey = list(dict.fromkeys(roots))
    seen = set(grey)
    black: set[Node] = set()
    while grey:
        node = grey.pop()
        black.add(node)
        for ref in refs(node):
            if ref not in seen:
                seen.add(ref)
                grey.append(ref)
    return black


def label_refs(ns: str, labels: Mapping[str, str]) -> Iterator[Node]:
    for key, value in labels.items():
        if key == LABEL_REF_CONTENT or key.startswith(LABEL_REF_CONTENT + "."):
            yield (ns, "content", value)
        elif key.startswith(LABEL_REF_SNAPSHOT) and len(key) > len(LABEL_REF_SNAPSHOT):
            yield (ns, "snapshots/" + key[len(LABEL_REF_SNAPSHOT):], value)


def parse_rfc3339(text: str) -> datetime.datetime | None:
    m = _RFC3339.match(text)
    if not m:
        return None
    date, clock, frac, tz = m.groups()
    micro = ((frac or "") + "000000")[:6]  # Go writes nanoseconds; datetime holds microseconds
    tz = "+00:00" if tz in ("Z", "z") else tz
    try:
        return datetime.datetime.fromisoformat(f"{date}T{clock}.{micro}{tz}")
    except ValueError:
        return None


def lease_expired(labels: Mapping[str, str], now: datetime.datetime) -> bool:
    value = labels.get(LABEL_EXPIRE)
    if value is None:
        return False
    expires = parse_rfc3339(value)
    if expires is None:
        # containerd ignores an invalid expiry rather than collecting what the lease holds.
        log.info("level=info msg=\"ignoring invalid lease expiry\" value=%r", value)
        return False
    return now >= expires


@dataclass
class Graph:
    roots: set[Node] = field(default_factory=set)
    edges: dict[Node, list[Node]] = field(default_factory=dict)
    collectable: set[Node] = field(default_factory=set)  # what the sweep may remove
    snapshot_parents: dict[Node, Node | None] = field(default_factory=dict)

    def add(self, src: Node, dst: Node) -> None:
        self.edges.setdefault(src, []).append(dst)


def build_graph(db: MetadataDB, content: ContentStore, snapshotters: Mapping[str, Snapshotter],
                now: datetime.datetime) -> Graph:
    g = Graph()
    namespaces = {n.name for n in db.namespaces.list()}
    for s in snapshotters.values():
        namespaces.update(s.namespaces())
    for ns in sorted(namespaces):
        for image in db.images.list(ns):
            node = (ns, "image", image.name)
            g.roots.add(node)
            g.add(node, (ns, "content", image.target.digest))
            g.edges[node].extend(label_refs(ns, image.labels))
        for c in db.containers.list(ns):
            node = (ns, "container", c.id)
            g.roots.add(node)
            if c.snapshotter and c.snapshot_key:
                g.add(node, (ns, f"snapshots/{c.snapshotter}", c.snapshot_key))
            g.edges.setdefault(node, []).extend(label_refs(ns, c.labels))
        for lease in db.leases.list(ns):
            node = (ns, "lease", lease.id)
            if lease_expired(lease.labels, now):
                g.collectable.add(node)
            else:
                g.roots.add(node)
            g.edges[node] = [(ns, r.type, r.id) for r in db.leases.list_resources(ns, lease.id)]
        for info in content.list(ns):
            node = (ns, "content", info.digest)
            g.collectable.add(node)
            if LABEL_ROOT in info.labels:
                g.roots.add(node)
            g.edges[node] = list(label_refs(ns, info.labels))
        for name, snapshotter in snapshotters.items():
            kind = f"snapshots/{name}"
            for info in snapshotter.list(ns):
                node = (ns, kind, info.name)
                g.collectable.add(node)
                if LABEL_ROOT in info.labels:
                    g.roots.add(node)
                parent = (ns, kind, info.parent) if info.parent else None
                g.snapshot_parents[node] = parent
                g.edges[node] = ([parent] if parent else []) + list(label_refs(ns, info.labels))
    return g


@dataclass
class Collected:
    removed: list[Node] = field(default_factory=list)


def collect(db: MetadataDB, content: ContentStore, snapshotters: Mapping[str, Snapshotter],
            now: datetime.datetime | None = None) -> Collected:
    """One stop-the-world collection: mark, then sweep what no root reaches."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    result = Collected()
    with db.transaction():
        g = build_graph(db, content, snapshotters, now)
        live = mark(g.roots, lambda n: g.edges.get(n, ()))
        dead = g.collectable - live
        for ns, kind, key in sorted(n for n in dead if n[1] == "lease"):
            db.leases.delete(ns, key)
            result.removed.append((ns, kind, key))
        for ns, kind, key in sorted(n for n in dead if n[1] == "content"):
            content.delete(ns, key)
            result.removed.append((ns, kind, key))

        def depth(node: Node) -> int:
            d = 0
            while (node := g.snapshot_parents.get(node)) is not None:
                d += 1
            return d

        # Children before parents: a snapshot with children cannot be removed.
        for node in sorted((n for n in dead if n[1].startswith("snapshots/")), key=depth, reverse=True):
            ns, kind, key = node
            try:
                snapshotters[kind[len("snapshots/"):]].remove(ns, key)
            except (Conflict, NotFound) as e:
                # A child prepared since the mark, or removed by someone else: next time.
                log.info("level=info msg=\"gc skipped snapshot\" key=%s reason=%r", key, str(e))
                continue
            result.removed.append(node)
    for node in result.removed:
        log.debug("level=debug msg=\"gc removed\" namespace=%s type=%s key=%s", *node)
    return result
