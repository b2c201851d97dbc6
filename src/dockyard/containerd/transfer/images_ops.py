"""Tag and remove images (containerd `core/images`, Docker `image tag` / `image rm`).

An image record is a name pointing at a target descriptor; a tag is another record with the same
target. Removing a record drops one reference; what no image, container or lease reaches any more
(manifests, configs, layers, snapshots) is removed by the garbage collector, which `remove` runs.
"""

from __future__ import annotations

from dataclasses import replace

from dockyard.errors import Conflict
from dockyard.images import reference

from .. import gc
from ..metadata import Image
from .stores import Stores


def image_name(text: str) -> str:
    """The record name for what a user typed: the normalized reference."""
    return str(reference.parse(text))


def tag(stores: Stores, ns: str, source: str, target: str) -> Image:
    """Point `target` at what `source` points at (replacing an older `target`)."""
    src = stores.images.get(ns, image_name(source))
    new = Image(image_name(target), src.target, dict(src.labels))
    try:
        return stores.images.create(ns, new)
    except Conflict:
        existing = stores.images.get(ns, new.name)
        return stores.images.update(ns, replace(existing, target=src.target), ["target"])


def remove(stores: Stores, ns: str, name: str) -> gc.Collected:
    """Delete the image record `name`, then collect what nothing references any more."""
    stores.images.delete(ns, image_name(name))
    return gc.collect(stores.db, stores.content, {stores.snapshotter_name: stores.snapshotter})
