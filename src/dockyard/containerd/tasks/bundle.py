"""A task's bundle directory, `<state>/tasks/<ns>/<id>/` (runtime-and-containerd.md §4.2):

    config.json       the container's OCI spec (root.path "rootfs" when we mount one)
    rootfs/           the snapshot's mounts, or a bind of a plain directory, or unused
    task.json         what a restarted daemon needs to find and clean up the task: the runtime,
                      its --root, the shim's state dir, whether rootfs is mounted
    json.log          the container's output, written by its shim (Docker's json-file format)
    exit-published    the exit the daemon has published for the init process, so that a
                      restarted daemon does not publish it again
    oom-published     the shim's OOM count up to which /tasks/oom has been published, likewise

The shim keeps its own files (socket, pid, exit status) under `<state>/shims/<ns>/<id>/`.
Every file is written whole (temporary file, fsync, rename, fsync of the directory).
"""

import errno
import json
import os
import shutil

from dockyard import atomicfile
from dockyard.containerd.snapshots import Mount, mount_all, unmount_all
from dockyard.errors import SystemFailure

CONFIG, ROOTFS, RECORD, LOG, EXIT_PUBLISHED = "config.json", "rootfs", "task.json", "json.log", "exit-published"
OOM_PUBLISHED = "oom-published"


def read_json(path: str):
    """The JSON object in `path`, or None when it is missing or unreadable."""
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


class Bundle:
    def __init__(self, path: str):
        self.path = path

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    @property
    def rootfs(self) -> str:
        return self.file(ROOTFS)

    @property
    def log_path(self) -> str:
        return self.file(LOG)

    def make(self) -> None:
        """The directory, new: an existing one belongs to a task we know or are cleaning up."""
        os.makedirs(os.path.dirname(self.path), mode=0o711, exist_ok=True)
        os.mkdir(self.path, 0o711)
        os.mkdir(self.rootfs, 0o755)

    def write_record(self, record: dict) -> None:
        atomicfile.write(self.file(RECORD), json.dumps(record).encode(), 0o600)

    def record(self) -> dict | None:
        return read_json(self.file(RECORD))

    def write_config(self, spec: dict) -> None:
        atomicfile.write(self.file(CONFIG), json.dumps(spec).encode(), 0o644)

    def mount_rootfs(self, mounts: list[Mount]) -> None:
        mount_all(mounts, self.rootfs)

    def exit_published(self) -> dict | None:
        return read_json(self.file(EXIT_PUBLISHED))

    def mark_exit_published(self, exit_status: int, exited_at: str) -> None:
        atomicfile.write(self.file(EXIT_PUBLISHED),
                     json.dumps({"exit_status": exit_status, "exited_at": exited_at}).encode())

    def oom_published(self) -> int:
        value = (read_json(self.file(OOM_PUBLISHED)) or {}).get("oom_kills")
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    def mark_oom_published(self, oom_kills: int) -> None:
        atomicfile.write(self.file(OOM_PUBLISHED), json.dumps({"oom_kills": oom_kills}).encode())

    def remove(self) -> None:
        """Unmount the rootfs and remove the directory; a parent namespace dir left empty goes too."""
        if os.path.isdir(self.rootfs):
            unmount_all(self.rootfs)
        try:
            os.rmdir(self.rootfs)
        except FileNotFoundError:
            pass
        except OSError as e:
            # Never rmtree through a rootfs that may still be mounted: it would delete the
            # snapshot's (or the user's directory's) files.
            raise SystemFailure(f"remove {self.rootfs}: {e.strerror}") from None
        shutil.rmtree(self.path, ignore_errors=True)
        try:
            os.rmdir(os.path.dirname(self.path))
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                raise
