"""Attaching a client's hijacked connection to a process's stdio: the container's init
(POST /containers/{id}/attach) or an exec (POST /exec/{id}/start).

The process's stdio belongs to its shim; dockyard-containerd proxies it on a Tasks.Attach
bidirectional stream (containerd/daemon/services/tasks.py): our first request names the process
(and asks for stdin), the first response says we are attached, then output responses until the
exit, and our later requests carry stdin, its close, and resizes. `TaskStream` is that call.

Attach before start (reference engine-api.md §1.3/§1.4: `docker run` attaches, then starts). A
container that is not running has no task to attach to, so the attach waits: it registers here,
and the container's start calls `before_start(daemon, id)` between Tasks.Create and Tasks.Start,
which connects every waiting attach to the new task before the process can write a byte. An
attach that finds the container running attaches at once and gets the output from then on.

`pump` moves the bytes (moby container/stream/attach.go semantics):
* output is written as it comes, framed (engine/streams.py) unless the process has a TTY;
* the client's half-close (the docker CLI's CloseWrite, at once for non-interactive runs) ends
  stdin only: with `close_stdin` (Config.StdinOnce for attach; always for exec) the process's
  stdin is closed, and the output goes on until the exit;
* with a TTY the detach keys are watched on stdin: the sequence ends the attach, not the process;
* the exit ends it: the caller closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from dataclasses import dataclass, field

import grpc
import grpc.aio

from dockyard.api.services.tasks.v1 import tasks_pb2 as pb
from dockyard.engine import streams
from dockyard.errors import DockyardError, SystemFailure

log = logging.getLogger("dockyard.engine.attach")

READ_SIZE = 32 * 1024
WAIT_POLL = 0.25  # how often a waiting attach looks whether its client or container is gone


class TaskStream:
    """One Tasks.Attach call: `read()` gives ("stdout"|"stderr", bytes), then ("exit", status)
    last, then None; `write`, `close_stdin`, `resize` go to the process."""

    def __init__(self, call, containerd):
        self._call = call
        self._containerd = containerd
        self.exit_status: int | None = None

    @classmethod
    async def open(cls, containerd, container_id: str, exec_id: str = "", stdin: bool = False) -> "TaskStream":
        call = containerd.tasks.Attach()
        stream = cls(call, containerd)
        try:
            await call.write(pb.AttachRequest(container_id=container_id, exec_id=exec_id, stdin=stdin))
            first = await call.read()
        except grpc.aio.AioRpcError as e:
            call.cancel()
            raise containerd.errors(e) from None
        if first is grpc.aio.EOF or first.WhichOneof("output") != "attached":
            call.cancel()
            raise SystemFailure(f"dockyard-containerd did not attach to {container_id} {exec_id}".strip())
        return stream

    async def read(self):
        if self.exit_status is not None:
            return None
        try:
            while True:
                response = await self._call.read()
                if response is grpc.aio.EOF:
                    return None
                kind = response.WhichOneof("output")
                if kind in ("stdout", "stderr"):
                    return kind, getattr(response, kind)
                if kind == "exit":
                    self.exit_status = response.exit.exit_status
                    return "exit", self.exit_status
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.CANCELLED:
                return None
            raise self._containerd.errors(e) from None
        except asyncio.InvalidStateError:  # the call was cancelled under us
            return None

    async def _send(self, request) -> None:
        try:
            await self._call.write(request)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as e:
            log.debug("attach: write dropped: %s", e)

    async def write(self, data: bytes) -> None:
        if data:
            await self._send(pb.AttachRequest(data=data))

    async def close_stdin(self) -> None:
        await self._send(pb.AttachRequest(close_stdin=True))

    async def resize(self, width: int, height: int) -> None:
        await self._send(pb.AttachRequest(width=width, height=height))

    def close(self) -> None:
        self._call.cancel()


# -- attach before start ---------------------------------------------------------------------------

@dataclass
class _Waiter:
    stdin: bool
    future: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


_waiting: "weakref.WeakKeyDictionary[object, dict[str, list[_Waiter]]]" = weakref.WeakKeyDictionary()


def _registry(daemon) -> dict[str, list[_Waiter]]:
    reg = _waiting.get(daemon)
    if reg is None:
        reg = _waiting[daemon] = {}
    return reg


async def before_start(daemon, container_id: str) -> None:
    """For the container's start, between Tasks.Create and Tasks.Start: connects the attaches
    waiting for this container to the new task, so they see all of its output."""
    waiters = _registry(daemon).pop(container_id, [])
    for w in waiters:
        if w.future.done():  # its client left
            continue
        try:
            stream = await TaskStream.open(daemon.containerd, container_id, "", stdin=w.stdin)
        except DockyardError as e:
            if not w.future.done():
                w.future.set_exception(e)
            continue
        if w.future.done():
            stream.close()
        else:
            w.future.set_result(stream)


def waiting(daemon, container_id: str) -> int:
    """How many attaches wait for the container's next start."""
    return sum(not w.future.done() for w in _registry(daemon).get(container_id, []))


async def attach_container(daemon, container_id: str, *, stdin: bool, running, gone) -> TaskStream | None:
    """A stream of the container's init: at once if `running()`, else once its next start
    connects it (`before_start`). None when `gone()` (the client or the container went) first.
    Should a start come without `before_start`, the attach connects when it sees it running."""
    if running():
        return await TaskStream.open(daemon.containerd, container_id, "", stdin=stdin)
    w = _Waiter(stdin)
    reg = _registry(daemon)
    reg.setdefault(container_id, []).append(w)
    try:
        while True:
            done, _ = await asyncio.wait({w.future}, timeout=WAIT_POLL)
            if done:
                return w.future.result()
            if gone():
                return None
            if running() and w.future.cancel():
                log.warning("container %s started without connecting its attaches: attaching late", container_id)
                return await TaskStream.open(daemon.containerd, container_id, "", stdin=stdin)
    finally:
        if not w.future.done():
            w.future.cancel()
        waiters = reg.get(container_id)
        if waiters is not None:
            with contextlib.suppress(ValueError):
                waiters.remove(w)
            if not waiters:
                reg.pop(container_id, None)


# -- moving the bytes ------------------------------------------------------------------------------

@dataclass
class Result:
    exit_status: int | None = None  # the process's, when its exit ended the attach
    detached: bool = False          # the client typed the detach keys
    client_gone: bool = False       # a write to the client failed


async def pump(conn, stream: TaskStream, *, tty: bool, stdout: bool = True, stderr: bool = True,
               stdin: bool = False, close_stdin: bool = False,
               detach_keys: streams.DetachKeys | None = None, terminal: bool | None = None) -> Result:
    """Copies until the process exits, the client detaches, or the client is gone. `conn` is the
    hijacked connection (read(n) → b"" at the client's half-close; write(data)). `tty`: raw
    output, else framed; `terminal` (default: `tty`): the process has one, so the detach keys
    are watched for."""
    result = Result()
    detached = asyncio.Event()

    async def copy_in():
        keys = detach_keys if (tty if terminal is None else terminal) else None
        while True:
            try:
                data = await conn.read(READ_SIZE)
            except (ConnectionError, OSError):
                data = b""
            if not data:
                if keys is not None:
                    await stream.write(keys.flush())
                if close_stdin:
                    await stream.close_stdin()
                return
            if keys is not None:
                data, done = keys.feed(data)
                await stream.write(data)
                if done:
                    detached.set()
                    return
            else:
                await stream.write(data)

    async def copy_out():
        while (item := await stream.read()) is not None:
            kind, data = item
            if kind == "exit":
                result.exit_status = data
                return
            if (kind == "stdout" and not stdout) or (kind == "stderr" and not stderr) or not data:
                continue
            out = data if tty else streams.frame(streams.STDOUT if kind == "stdout" else streams.STDERR, data)
            try:
                await conn.write(out)
            except (ConnectionError, OSError, RuntimeError):
                result.client_gone = True
                return

    out_task = asyncio.create_task(copy_out())
    in_task = asyncio.create_task(copy_in()) if stdin else None
    detach_task = asyncio.create_task(detached.wait())
    try:
        await asyncio.wait({out_task, detach_task}, return_when=asyncio.FIRST_COMPLETED)
        result.detached = detached.is_set() and not out_task.done()
        if out_task.done():
            out_task.result()  # a containerd error surfaces
    finally:
        for t in (out_task, in_task, detach_task):
            if t is not None and not t.done():
                t.cancel()
        for t in (out_task, in_task, detach_task):
            if t is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        stream.close()
    return result
