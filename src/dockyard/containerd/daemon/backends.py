"""What the services are served from: the daemon's stores, made once at start-up."""

import os

from dockyard.containerd.content import LocalContentStore
from dockyard.containerd.metadata import MetadataDB
from dockyard.containerd.snapshots import OverlaySnapshotter


class Backends:
    """The stores under the daemon's root (`--root`) and its state dir (`--state`).
    Services take what they need from here; `close()` releases them on shutdown."""

    def __init__(self, root: str, state: str):
        self.root = root
        self.state = state
        self.db = MetadataDB(root)
        self.content = LocalContentStore(os.path.join(root, "content"), self.db)
        self.snapshotter = OverlaySnapshotter(os.path.join(root, "snapshots"))

    def close(self) -> None:
        self.db.close()
