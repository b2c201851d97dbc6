"""dockyardd's connection to dockyard-containerd: one grpc.aio channel, the engine's namespace
("moby", as dockerd uses) on every call, and the stubs as attributes:

    cd = Containerd(config.containerd_address, "moby")
    await cd.connect()
    reply = await cd.call(cd.tasks.Get, tasks_pb2.GetRequest(container_id=cid))   # errors mapped
    async for envelope in cd.events.Subscribe(request): ...                       # raw stubs too

The namespace travels as the `containerd-namespace` metadata (runtime-and-containerd.md §4.9),
added by a thin wrapper around each stub method rather than a grpc.aio interceptor: the wrapper
costs one dict merge per call and behaves the same for every call shape (unary, server-streaming,
the bidirectional Tasks.Attach). The channel reconnects by itself when dockyard-containerd
restarts on the same socket; its backoff is capped at a second so that is quick.

`spawn_containerd(config)` starts dockyardd's own dockyard-containerd, as dockerd starts its
containerd when `--containerd` is not given: socket <exec-root>/containerd/containerd.sock, root
<data-root>/containerd, state <exec-root>/containerd, log <data-root>/containerd.log. It runs in
its own session and is left running when dockyardd stops, so containers keep their manager; a
restarted dockyardd finds it answering and uses it (its pid is kept in
<exec-root>/containerd/dockyard-containerd.pid).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys

import grpc
import grpc.aio
from google.protobuf import empty_pb2

from dockyard.api.services.containers.v1.containers_pb2_grpc import ContainersStub
from dockyard.api.services.content.v1.content_pb2_grpc import ContentStub
from dockyard.api.services.events.v1.events_pb2_grpc import EventsStub
from dockyard.api.services.images.v1.images_pb2_grpc import ImagesStub
from dockyard.api.services.leases.v1.leases_pb2_grpc import LeasesStub
from dockyard.api.services.namespaces.v1.namespaces_pb2_grpc import NamespacesStub
from dockyard.api.services.snapshots.v1.snapshots_pb2_grpc import SnapshotsStub
from dockyard.api.services.tasks.v1.tasks_pb2_grpc import TasksStub
from dockyard.api.services.transfer.v1.transfer_pb2_grpc import TransferStub
from dockyard.api.services.version.v1.version_pb2_grpc import VersionStub
from dockyard.containerd.daemon.config import GRPC_OPTIONS
from dockyard.containerd.daemon.errors import from_rpc_error
from dockyard.containerd.daemon.namespace import NAMESPACE_KEY
from dockyard.errors import DockyardError, SystemFailure, Unavailable

log = logging.getLogger("dockyard.engine.containerd")

CONTAINERD = os.path.join(os.path.dirname(sys.executable), "dockyard-containerd")
PIDFILE_NAME = "dockyard-containerd.pid"
_CHANNEL_OPTIONS = GRPC_OPTIONS + [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


class _Namespaced:
    """A stub whose every method adds the namespace header to the call's metadata."""

    def __init__(self, stub, header: tuple[str, str]):
        self._stub = stub
        self._header = header

    def __getattr__(self, name: str):
        method = getattr(self._stub, name)
        header = self._header

        def call(request=None, *, metadata=None, **kwargs):
            md = [m for m in (metadata or ()) if m[0] != NAMESPACE_KEY] + [header]
            return method(request, metadata=md, **kwargs)
        call.__name__ = name
        setattr(self, name, call)  # cached: the next lookup skips __getattr__
        return call


class Containerd:
    """The channel and the stubs. `connect()` opens it and waits until the daemon answers."""

    def __init__(self, address: str, namespace: str):
        self.address = address
        self.namespace = namespace
        self.channel: grpc.aio.Channel | None = None

    async def connect(self, timeout: float = 30.0) -> None:
        self.channel = grpc.aio.insecure_channel(f"unix:{self.address}", options=_CHANNEL_OPTIONS)
        header = (NAMESPACE_KEY, self.namespace)
        for name, stub in (("containers", ContainersStub), ("tasks", TasksStub), ("images", ImagesStub),
                           ("content", ContentStub), ("snapshots", SnapshotsStub), ("leases", LeasesStub),
                           ("events", EventsStub), ("transfer", TransferStub)):
            setattr(self, name, _Namespaced(stub(self.channel), header))
        self.version = VersionStub(self.channel)
        self.namespaces = NamespacesStub(self.channel)
        try:
            await asyncio.wait_for(self.channel.channel_ready(), timeout)
        except asyncio.TimeoutError:
            await self.close()
            raise Unavailable(f"dockyard-containerd is not answering on {self.address}") from None

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
            self.channel = None

    async def call(self, method, request, **kwargs):
        """`await method(request)` with a failed call raised as the dockyard.errors class of
        its status (NotFound, Conflict, …; Unavailable while the daemon is away)."""
        try:
            return await method(request, **kwargs)
        except grpc.aio.AioRpcError as e:
            raise from_rpc_error(e) from None

    @staticmethod
    def errors(e: grpc.RpcError) -> DockyardError:
        """The dockyard.errors instance of a failed call (for streams callers iterate)."""
        return from_rpc_error(e)

    async def server_version(self) -> tuple[str, str]:
        """(version, revision) of dockyard-containerd."""
        reply = await self.call(self.version.Version, empty_pb2.Empty(), timeout=10)
        return reply.version, reply.revision


# -- our own dockyard-containerd ----------------------------------------------------------------

def _pidfile(config) -> str:
    return os.path.join(config.containerd_state, PIDFILE_NAME)


def managed_pid(config) -> int | None:
    """The pid of the dockyard-containerd dockyardd started for this exec-root, if it runs."""
    try:
        with open(_pidfile(config)) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return None
    # The pid may have been reused since: it must still be a dockyard-containerd on our socket.
    if not any(a.endswith(b"dockyard-containerd") for a in argv[:2]) or \
            os.fsencode(config.containerd_address) not in argv:
        return None
    return pid


async def _answers(address: str, timeout: float) -> bool:
    if not os.path.exists(address):
        return False
    channel = grpc.aio.insecure_channel(f"unix:{address}", options=_CHANNEL_OPTIONS)
    try:
        await asyncio.wait_for(channel.channel_ready(), timeout)
        return True
    except asyncio.TimeoutError:
        return False
    finally:
        await channel.close()


async def spawn_containerd(config, timeout: float = 30.0) -> int | None:
    """Makes sure our own dockyard-containerd serves on config.containerd_address: one found
    answering is kept (None is returned when we cannot tell its pid); otherwise one is started in
    its own session, logging to <data-root>/containerd.log, and its pid returned once it answers."""
    address = config.containerd_address
    if await _answers(address, 1.0):
        pid = managed_pid(config)
        log.info("using the running dockyard-containerd", extra=_fields(address=address, pid=pid or "?"))
        return pid
    for path in (config.containerd_state, os.path.dirname(address), config.containerd_root):
        os.makedirs(path, mode=0o711, exist_ok=True)
    argv = [CONTAINERD, "--address", address, "--root", config.containerd_root,
            "--state", config.containerd_state,
            "--log-level", {"warn": "warning", "fatal": "error"}.get(config.effective_log_level,
                                                                    config.effective_log_level)]
    with open(config.containerd_log, "ab") as logf:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                start_new_session=True, close_fds=True)
    with open(_pidfile(config) + ".tmp", "w") as f:
        f.write(f"{proc.pid}\n")
    os.replace(_pidfile(config) + ".tmp", _pidfile(config))
    log.info("started dockyard-containerd", extra=_fields(pid=proc.pid, address=address, log=config.containerd_log))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if proc.poll() is not None:
            raise SystemFailure(f"dockyard-containerd exited with status {proc.returncode}; "
                                f"see {config.containerd_log}")
        if await _answers(address, 0.5):
            _forget(proc)
            return proc.pid
        await asyncio.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait()
    raise SystemFailure(f"dockyard-containerd did not answer on {address} within {timeout:.0f}s; "
                        f"see {config.containerd_log}")


def _forget(proc: subprocess.Popen) -> None:
    # The child outlives us by design; Popen's destructor must not warn about it still running.
    proc.returncode = 0


def reap(pid: int) -> bool:
    """True when `pid` is gone (reaped here if it was our child)."""
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return True
    return not os.path.exists(f"/proc/{pid}") or _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _fields(**values) -> dict:
    return {"fields": values}


class Supervisor:
    """Keeps our own dockyard-containerd running: when it dies (a crash, a kill), it is started
    again on the same socket and the channel reconnects by itself. Only for a managed daemon;
    one given with --containerd is the operator's to run."""

    def __init__(self, config, pid: int | None):
        self.config = config
        self.pid = pid
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.pid is not None and not reap(self.pid):
                continue
            if self.pid is None and await _answers(self.config.containerd_address, 1.0):
                self.pid = managed_pid(self.config)
                continue
            log.warning("dockyard-containerd is gone: starting it again", extra=_fields(pid=self.pid or "?"))
            try:
                self.pid = await spawn_containerd(self.config)
            except DockyardError as e:
                log.error(f"cannot restart dockyard-containerd: {e}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
