"""The Daemon: the engine's objects behind the API, built in dependency order and closed in the
reverse one. Each component is `Component(daemon)` with `async start()` (after the containerd
client is up; it restores its state there) and `async close()` (which never stops containers:
live restore is the default).

    daemon.config      engine.config.Config
    daemon.containerd  engine.containerd.Containerd (namespace "moby")
    daemon.store       engine.store.Store            container records (engine.db)
    daemon.events      engine.events.Events
    daemon.images      engine.images.Images
    daemon.networks    engine.networks.Networks      networks, endpoints, sandboxes (network.db)
    daemon.containers  engine.containers.Containers
    daemon.execs       engine.execs.Execs
    daemon.restarts    engine.restarts.Restarts
    daemon.health      engine.health.Health

Components are imported by name, lazily.
"""

from __future__ import annotations

import importlib
import logging
import os
import uuid

from .config import Config
from .containerd import Containerd

log = logging.getLogger("dockyard.engine")

# attribute → (module, class), in start order.
COMPONENTS: tuple[tuple[str, str, str], ...] = (
    ("store", "dockyard.engine.store", "Store"),
    ("events", "dockyard.engine.events", "Events"),
    ("images", "dockyard.engine.images", "Images"),
    ("networks", "dockyard.engine.networks", "Networks"),
    ("containers", "dockyard.engine.containers", "Containers"),
    ("execs", "dockyard.engine.execs", "Execs"),
    ("restarts", "dockyard.engine.restarts", "Restarts"),
    ("health", "dockyard.engine.health", "Health"),
)


class Daemon:
    def __init__(self, config: Config, containerd: Containerd | None = None):
        self.config = config
        self.containerd = containerd or Containerd(config.containerd_address, config.namespace)
        self.revision = "unknown"  # the source commit, as dockyard-containerd reports it
        self.id = ""
        self.warnings: list[str] = []  # shown in /info
        self._started: list[str] = []
        for attr, _, _ in COMPONENTS:
            setattr(self, attr, None)

    async def start(self) -> None:
        """Connects to dockyard-containerd (already running: see server.py) and starts the
        components in order."""
        os.makedirs(self.config.containers_dir, mode=0o710, exist_ok=True)
        self.id = _engine_id(self.config.data_root)
        if self.containerd.channel is None:
            await self.containerd.connect()
        try:
            _, self.revision = await self.containerd.server_version()
        except Exception as e:  # an old or busy daemon: the commit is only shown in /version
            log.debug("containerd version", exc_info=e)
        for attr, module_name, class_name in COMPONENTS:
            component = getattr(importlib.import_module(module_name), class_name)(self)
            setattr(self, attr, component)
            await component.start()
            self._started.append(attr)
        log.info("engine started", extra={"fields": {"components": ",".join(self._started)}})

    async def close(self) -> None:
        """Closes the components in reverse order, then the channel; containers keep running."""
        while self._started:
            attr = self._started.pop()
            try:
                await getattr(self, attr).close()
            except Exception as e:  # one component's failure must not keep the others open
                log.error("closing a component failed", extra={"fields": {"component": attr, "error": repr(e)}})
                log.debug("traceback", exc_info=e)
        await self.containerd.close()

    async def containerd_version(self) -> str:
        try:
            return (await self.containerd.server_version())[0]
        except Exception as e:
            log.debug("containerd version", exc_info=e)
            return ""

    def events_listeners(self) -> int:
        listeners = getattr(self.events, "listeners", 0)
        return int(listeners() if callable(listeners) else listeners)


def _engine_id(data_root: str) -> str:
    """A stable identity for /info's ID, kept in <data-root>/engine-id (dockerd keeps one too)."""
    path = os.path.join(data_root, "engine-id")
    try:
        with open(path) as f:
            value = f.read().strip()
            if value:
                return value
    except FileNotFoundError:
        pass
    value = str(uuid.uuid4())
    with open(path + ".tmp", "w") as f:
        f.write(value + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)
    return value
