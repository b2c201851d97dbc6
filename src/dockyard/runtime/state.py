"""A container's durable state under `--root`: `<root>/<id>/state.json` plus `exec.fifo`,
and the status derived from them (runtime-spec runtime.md §State), as runc derives it:
paused if the freezer says so, stopped if the init is gone or its pid was reused,
created while exec.fifo exists, otherwise running."""

import json
import os
import string
import time

from dockyard import atomicfile
from dockyard.errors import Conflict, InvalidArgument, NotFound

DEFAULT_ROOT = "/run/dockyard/runc"
OCI_VERSION = "1.2.0"
_ID_CHARS = frozenset(string.ascii_letters + string.digits + "_+-.")

CREATING, CREATED, RUNNING, PAUSED, STOPPED = "creating", "created", "running", "paused", "stopped"


def validate_id(container_id: str) -> None:
    if not container_id or not _ID_CHARS.issuperset(container_id) or container_id in (".", ".."):
        raise InvalidArgument(f"invalid container id format: {container_id!r}")


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = data[data.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def write_atomic(path: str, data: bytes, mode: int = 0o600) -> None:
    atomicfile.write(path, data, mode)


class Container:
    """One container's record. `record` is what state.json holds."""

    def __init__(self, root: str, container_id: str, record: dict):
        self.root = root
        self.id = container_id
        self.record = record

    @property
    def dir(self) -> str:
        return os.path.join(self.root, self.id)

    @property
    def fifo_path(self) -> str:
        return os.path.join(self.dir, "exec.fifo")

    @property
    def config(self) -> dict:
        return self.record["config"]

    @property
    def pid(self) -> int:
        return self.record.get("pid", 0)

    # --- loading and saving ---------------------------------------------------------------
    @classmethod
    def load(cls, root: str, container_id: str) -> "Container":
        validate_id(container_id)
        path = os.path.join(root, container_id, "state.json")
        try:
            with open(path, "rb") as f:
                record = json.load(f)
        except FileNotFoundError:
            raise NotFound(f"container {container_id} does not exist") from None
        except ValueError as e:
            raise InvalidArgument(f"container {container_id}: corrupt state.json: {e}") from None
        return cls(root, container_id, record)

    @classmethod
    def reserve(cls, root: str, container_id: str) -> str:
        """Create the container's state dir; the id is taken from this moment on."""
        validate_id(container_id)
        os.makedirs(root, mode=0o700, exist_ok=True)
        path = os.path.join(root, container_id)
        try:
            os.mkdir(path, 0o711)
        except FileExistsError:
            raise Conflict(f"container with id exists: {container_id}") from None
        return path

    def save(self) -> None:
        write_atomic(os.path.join(self.dir, "state.json"), json.dumps(self.record).encode())

    def remove(self) -> None:
        import shutil
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- status -------------------------------------------------------------------------
    def init_alive(self) -> bool:
        """The init process still runs and is the same process (pid-reuse guard)."""
        pid = self.pid
        return pid > 0 and proc_start_time(pid) == self.record.get("init_start_time")

    def status(self, cgroup=None) -> str:
        if not self.init_alive():
            return STOPPED
        if self.record.get("creating"):
            return CREATING
        if cgroup is not None and cgroup.exists() and cgroup.is_frozen():
            return PAUSED
        if os.path.exists(self.fifo_path):
            return CREATED
        return RUNNING

    def oci_state(self, status: str) -> dict:
        """The runtime-spec state object, with runc's extra fields (rootfs, created, owner)."""
        state = {
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "pid": self.pid if status != STOPPED else 0,
            "status": status,
            "bundle": self.record["bundle"],
            "rootfs": self.record["rootfs"],
            "created": self.record["created"],
            "owner": self.record.get("owner", ""),
        }
        annotations = self.config.get("annotations")
        if annotations:
            state["annotations"] = annotations
        return state


def list_ids(root: str) -> list[str]:
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    return [n for n in names if os.path.exists(os.path.join(root, n, "state.json"))]
