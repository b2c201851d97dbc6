"""The local objects an image operation works on, in one value (containerd's transfer service
gets the same from its plugin set: content store, snapshotter, image and lease services)."""

from __future__ import annotations

from dataclasses import dataclass

from ..content import ContentStore
from ..metadata import Images, Leases, MetadataDB
from ..snapshots import Snapshotter


@dataclass(frozen=True)
class Stores:
    content: ContentStore
    snapshotter: Snapshotter
    images: Images
    leases: Leases
    db: MetadataDB
    snapshotter_name: str = "overlayfs"

    @classmethod
    def of(cls, backends) -> Stores:
        """From the daemon's `Backends` (anything with .db, .content and .snapshotter)."""
        return cls(backends.content, backends.snapshotter, backends.db.images, backends.db.leases, backends.db)
