"""What the services are served from: the daemon's stores, made once at start-up."""

import os

from dockyard.containerd.content import LocalContentStore
from dockyard.containerd.events import EventBroker
from dockyard.containerd.metadata import MetadataDB
from dockyard.containerd.snapshots import OverlaySnapshotter
from dockyard.containerd.tasks import TaskManager


class Backends:
    """The stores under the daemon's root (`--root`) and its state dir (`--state`).
    Services take what they need from here; `close()` releases them on shutdown."""

    def __init__(self, root: str, state: str):
        self.root = root
        self.state = state
        self.db = MetadataDB(root)
        self.content = LocalContentStore(os.path.join(root, "content"), self.db)
        self.snapshotter = OverlaySnapshotter(os.path.join(root, "snapshots"))
        # Services publish what they change here (/containers/create …); Events serves it.
        self.events = EventBroker()
        # Reconnects to the shims of running tasks before anything is served.
        self.tasks = TaskManager(state, self.db.containers, self.snapshotter, self.events)

    def close(self) -> None:
        self.tasks.close()
        self.events.close()
        self.db.close()
