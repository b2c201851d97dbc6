"""Tasks: the running side of containers, carried out by one dockyard-shim per container
(runtime-and-containerd.md §4.2–4.4).

  bundle   a task's bundle directory under `<state>/tasks/<ns>/<id>/` and the records in it
  manager  TaskManager: create (bundle, rootfs, `dockyard-shim start`, shim `create`), the
           calls on a live task, one exit watcher per process, and recovery on daemon start
           (reconnect to live shims, clean up after dead ones)

The shims outlive the daemon: nothing here holds a container's stdio or its exit status. The
shim owns both; the daemon only relays calls and publishes events.
"""

from ..taskoptions import create_options
from .manager import TaskManager

__all__ = ["TaskManager", "create_options"]
