"""Exec instances: `docker exec` (POST /containers/{id}/exec, POST /exec/{id}/start, GET
/exec/{id}/json, POST /exec/{id}/resize; reference engine-api.md §1.3 and §1.6) and the health
checks' probes (`run_probe`).

An exec is only a configuration until it is started (moby daemon/exec.go): create checks that
the container runs and keeps the config; start builds an OCI process from the container's spec
process (stored in dockyard-containerd) and the exec's Cmd/Env/WorkingDir/User/Tty/Privileged,
registers it with Tasks.Exec, attaches (when the client wants its stdio: before Tasks.Start, so
no output is lost) and starts it. A watcher awaits Tasks.Wait, records the exit code (what
`docker exec` exits with: the CLI reads it from exec inspect once the stream ends, so the stream
is closed only after it is recorded), publishes exec_die, and frees the process in the shim.

Exec records live in memory, as dockerd's do: a daemon restart forgets them. Per container the
finished ones are kept (for inspect) up to KEEP_FINISHED.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
from dataclasses import dataclass, field

from google.protobuf import any_pb2

from dockyard.api.services.containers.v1 import containers_pb2 as cpb
from dockyard.api.services.tasks.v1 import tasks_pb2 as pb
from dockyard.engine.attach import TaskStream
from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.linux import fs as linux_fs
from dockyard.linux.capabilities import NAMES as CAP_NAMES
from dockyard.engine.gojson import go_keys
from dockyard.linux.user import parse_user_spec

log = logging.getLogger("dockyard.engine.execs")

KEEP_FINISHED = 64
EXEC_CONFIG_KEYS = frozenset({"AttachStdin", "AttachStdout", "AttachStderr", "ConsoleSize", "DetachKeys",
                              "Tty", "Env", "Cmd", "Privileged", "User", "WorkingDir"})
PROCESS_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/Process"
STDIN_OPEN = "attach"  # ExecProcessRequest.stdin: any non-empty value keeps stdin open
ALL_CAPS = [CAP_NAMES[n] for n in sorted(CAP_NAMES)]


@dataclass
class Exec:
    id: str
    container_id: str
    cmd: list[str]
    env: list[str]
    working_dir: str
    user: str
    tty: bool
    privileged: bool
    attach_stdin: bool
    attach_stdout: bool
    attach_stderr: bool
    detach_keys: str
    console_size: list[int] | None
    running: bool = False
    started: bool = False
    exit_code: int | None = None
    pid: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def inspect(self) -> dict:
        """ExecInspectResponse (docker-engine-api-v1.45.yaml)."""
        return {
            "CanRemove": False,
            "ContainerID": self.container_id,
            "DetachKeys": self.detach_keys,
            "ExitCode": self.exit_code,
            "ID": self.id,
            "OpenStderr": self.attach_stderr,
            "OpenStdin": self.attach_stdin,
            "OpenStdout": self.attach_stdout,
            "ProcessConfig": {
                "arguments": self.cmd[1:],
                "entrypoint": self.cmd[0] if self.cmd else "",
                "privileged": self.privileged,
                "tty": self.tty,
                "user": self.user,
            },
            "Running": self.running,
            "Pid": self.pid,
        }


def _str_list(value, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{what} must be a list of strings")
    return value


def _console_size(value) -> list[int] | None:
    if value is None:
        return None
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)):
        raise InvalidArgument("ConsoleSize must be [height, width]")
    return value


def merge_env(base: list[str], extra: list[str]) -> list[str]:
    """`extra` over `base` by variable name, order kept (moby's ReplaceOrAppendEnvValues)."""
    out = list(base)
    index = {e.partition("=")[0]: i for i, e in enumerate(out)}
    for e in extra:
        name = e.partition("=")[0]
        if "=" not in e:  # "NAME" alone: unset? moby keeps such entries out unless set
            continue
        if name in index:
            out[index[name]] = e
        else:
            index[name] = len(out)
            out.append(e)
    return out


def _read_in_root(pid: int, path: str) -> str:
    """A file of the container's filesystem, resolved inside its root (never out of it)."""
    root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = linux_fs.open_in_root(root, path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return ""
    finally:
        os.close(root)
    with os.fdopen(fd, "rb") as f:
        return f.read(1 << 20).decode("utf-8", "replace")


class Execs:
    """The daemon's exec instances (`daemon.execs`)."""

    def __init__(self, daemon):
        self.daemon = daemon
        self._execs: dict[str, Exec] = {}
        self._by_container: dict[str, list[str]] = {}
        self._watchers: set[asyncio.Task] = set()

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        for t in list(self._watchers):  # the processes go on; only our waiting stops
            t.cancel()
        for t in list(self._watchers):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    # -- lookups -------------------------------------------------------------------------------

    def get(self, exec_id: str) -> Exec:
        ex = self._execs.get(exec_id)
        if ex is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return ex

    def ids_of(self, container_id: str) -> list[str]:
        """The container's exec ids (inspect's ExecIDs)."""
        return list(self._by_container.get(container_id, []))

    def forget(self, container_id: str) -> None:
        """The container is gone (or stopped): its execs go too, as dockerd's do."""
        for exec_id in self._by_container.pop(container_id, []):
            self._execs.pop(exec_id, None)

    # -- create and start ----------------------------------------------------------------------

    def _container(self, ref: str):
        c = self.daemon.store.get(ref)
        state = c.state
        if not state.running:
            raise Conflict(f"Container {c.id} is not running")
        if state.paused:
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        if state.restarting:
            raise Conflict(f"Container {c.id} is restarting, wait until the container is running")
        return c

    def create(self, container_ref: str, config: dict) -> Exec:
        """POST /containers/{id}/exec: an ExecConfig → the new Exec (not started)."""
        config = go_keys(config, EXEC_CONFIG_KEYS)  # docker-py sends "detachKeys"
        c = self._container(container_ref)
        cmd = _str_list(config.get("Cmd"), "Cmd")
        if not cmd:
            raise InvalidArgument("No exec command specified")
        detach_keys = config.get("DetachKeys") or ""
        if not isinstance(detach_keys, str):
            raise InvalidArgument("DetachKeys must be a string")
        if detach_keys:
            from dockyard.engine.streams import DetachKeys
            DetachKeys(detach_keys)  # InvalidArgument "Invalid detach keys (x) provided"
        for key in ("WorkingDir", "User"):
            if not isinstance(config.get(key) or "", str):
                raise InvalidArgument(f"{key} must be a string")
        working_dir = config.get("WorkingDir") or ""
        if working_dir and not working_dir.startswith("/"):
            raise InvalidArgument(f"the working directory '{working_dir}' is invalid, it needs to be an absolute path")
        ex = Exec(id=secrets.token_hex(32), container_id=c.id, cmd=cmd,
                  env=_str_list(config.get("Env"), "Env"), working_dir=working_dir,
                  user=config.get("User") or "", tty=bool(config.get("Tty")),
                  privileged=bool(config.get("Privileged")), attach_stdin=bool(config.get("AttachStdin")),
                  attach_stdout=bool(config.get("AttachStdout")), attach_stderr=bool(config.get("AttachStderr")),
                  detach_keys=detach_keys, console_size=_console_size(config.get("ConsoleSize")))
        self._execs[ex.id] = ex
        ids = self._by_container.setdefault(c.id, [])
        ids.append(ex.id)
        self._trim(c.id)
        self._event(c, f"exec_create: {' '.join(cmd)}", {"execID": ex.id})
        return ex

    def _trim(self, container_id: str) -> None:
        ids = self._by_container.get(container_id, [])
        finished = [i for i in ids if self._execs[i].exit_code is not None]
        for exec_id in finished[:max(0, len(finished) - KEEP_FINISHED)]:
            ids.remove(exec_id)
            self._execs.pop(exec_id, None)

    async def _process(self, c, ex: Exec) -> dict:
        """The OCI process of the exec: the container's, with the exec's settings."""
        cd = self.daemon.containerd
        reply = await cd.call(cd.containers.Get, cpb.GetContainerRequest(id=c.id))
        spec = json.loads(reply.container.spec.value or b"{}")
        process = dict(spec.get("process") or {})
        process["args"] = ex.cmd
        process["env"] = merge_env(list(process.get("env") or []), ex.env)
        process["terminal"] = ex.tty
        if ex.working_dir:
            process["cwd"] = ex.working_dir
        if ex.tty and ex.console_size and all(ex.console_size):
            process["consoleSize"] = {"height": ex.console_size[0], "width": ex.console_size[1]}
        else:
            process.pop("consoleSize", None)
        if ex.user:
            pid = await self._pid(c)
            passwd, group = _read_in_root(pid, "/etc/passwd"), _read_in_root(pid, "/etc/group")
            uid, gid, extra = parse_user_spec(ex.user, passwd, group)
            process["user"] = {"uid": uid, "gid": gid, **({"additionalGids": extra} if extra else {})}
        if ex.privileged:
            process["capabilities"] = {k: list(ALL_CAPS) for k in ("bounding", "effective", "permitted")}
        return process

    async def _pid(self, c) -> int:
        cd = self.daemon.containerd
        reply = await cd.call(cd.tasks.Get, pb.GetRequest(container_id=c.id))
        return reply.process.pid

    def check_startable(self, exec_id: str):
        """(exec, container) when the exec can be started; NotFound/Conflict otherwise."""
        ex = self.get(exec_id)
        if ex.started:
            if ex.exit_code is not None:
                raise Conflict(f"Error: Exec command {ex.id} has already run")
            raise Conflict(f"Error: Exec command {ex.id} is already running")
        return ex, self._container(ex.container_id)

    async def start_exec(self, exec_id: str, *, attach: bool, tty: bool | None = None,
                    console_size: list[int] | None = None) -> TaskStream | None:
        """POST /exec/{id}/start: runs the exec; with `attach`, the stream of its stdio (opened
        before the process starts). The exit is recorded by a watcher either way."""
        ex, c = self.check_startable(exec_id)  # the start's Tty only frames the stream (dockerd)
        if console_size:
            ex.console_size = _console_size(console_size)
        ex.started = True
        cd = self.daemon.containerd
        stream = None
        try:
            process = await self._process(c, ex)
            await cd.call(cd.tasks.Exec, pb.ExecProcessRequest(
                container_id=c.id, exec_id=ex.id, terminal=ex.tty,
                stdin=STDIN_OPEN if ex.attach_stdin and attach else "",
                spec=any_pb2.Any(type_url=PROCESS_TYPE, value=json.dumps(process).encode())))
            if attach:
                stream = await TaskStream.open(cd, c.id, ex.id, stdin=ex.attach_stdin)
            reply = await cd.call(cd.tasks.Start, pb.StartRequest(container_id=c.id, exec_id=ex.id))
        except BaseException:
            if stream is not None:
                stream.close()
            ex.exit_code = ex.exit_code if ex.exit_code is not None else 126
            ex.done.set()
            with contextlib.suppress(Exception):
                await cd.call(cd.tasks.DeleteProcess, pb.DeleteProcessRequest(container_id=c.id, exec_id=ex.id))
            raise
        ex.pid, ex.running = reply.pid, True
        self._event(c, f"exec_start: {' '.join(ex.cmd)}", {"execID": ex.id})
        watcher = asyncio.get_running_loop().create_task(self._watch(c, ex))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return stream

    async def _watch(self, c, ex: Exec) -> None:
        cd = self.daemon.containerd
        try:
            reply = await cd.call(cd.tasks.Wait, pb.WaitRequest(container_id=c.id, exec_id=ex.id))
            ex.exit_code = reply.exit_status
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - the task went away: the exec died with it
            log.debug("exec wait failed: %s", e)
            ex.exit_code = 137 if ex.exit_code is None else ex.exit_code
        ex.running = False
        ex.done.set()
        self._event(c, "exec_die", {"execID": ex.id, "exitCode": str(ex.exit_code)})
        with contextlib.suppress(Exception):
            await cd.call(cd.tasks.DeleteProcess, pb.DeleteProcessRequest(container_id=c.id, exec_id=ex.id))

    async def resize(self, exec_id: str, height: int, width: int) -> None:
        ex = self.get(exec_id)
        if not ex.running:
            raise Conflict(f"Exec {ex.id} is not running") if ex.started else NotFound(
                f"Exec {ex.id} is not started")
        cd = self.daemon.containerd
        await cd.call(cd.tasks.ResizePty, pb.ResizePtyRequest(container_id=ex.container_id, exec_id=ex.id,
                                                                width=width, height=height))

    async def wait(self, exec_id: str) -> int:
        ex = self.get(exec_id)
        await ex.done.wait()
        return ex.exit_code

    # -- health probes -------------------------------------------------------------------------

    async def run_probe(self, container, cmd: list[str], timeout: float,
                        max_output: int = 4096) -> tuple[int, str]:
        """Runs `cmd` in the container as a health check does (moby daemon/health.go): its exit
        code and up to `max_output` bytes of its output; on timeout the probe is killed and
        (-1, "Health check exceeded timeout (…)") returned."""
        ex = self.create(container.id, {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True})
        stream = await self.start_exec(ex.id, attach=True)
        out = bytearray()

        async def collect():
            while (item := await stream.read()) is not None:
                kind, data = item
                if kind in ("stdout", "stderr") and len(out) < max_output:
                    out.extend(data[:max_output - len(out)])
            await ex.done.wait()

        try:
            await asyncio.wait_for(collect(), timeout)
        except asyncio.TimeoutError:
            cd = self.daemon.containerd
            with contextlib.suppress(Exception):
                await cd.call(cd.tasks.Kill, pb.KillRequest(container_id=ex.container_id, exec_id=ex.id, signal=9))
            return -1, f"Health check exceeded timeout ({timeout:g}s)"
        finally:
            stream.close()
        return ex.exit_code, out.decode("utf-8", "replace")

    # -- events --------------------------------------------------------------------------------

    def _event(self, c, action: str, extra: dict) -> None:
        events = getattr(self.daemon, "events", None)
        if events is None:
            return
        try:
            from dockyard.engine.events import container_attributes
            attrs = container_attributes(c, **extra)
        except Exception:  # noqa: BLE001 - the attributes are a nicety; the event still goes
            attrs = {"name": c.name, "image": c.image, **extra}
        events.publish("container", action, c.id, attrs)

