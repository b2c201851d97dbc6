"""TaskManager: tasks of the containers in the metadata store, each carried out by its shim.

Layout under the daemon's state dir (`--state`):

    tasks/<ns>/<id>/     the bundle (`bundle.py`)
    shims/<ns>/<id>/     the shim's own: shim.sock, shim.pid, exit (`dockyard-shim start`)
    runc/<ns>/           the OCI runtime's --root, one per namespace as containerd has it

Exit delivery (§4.4). Every process has one watcher thread blocked in the shim's `wait`. When it
returns, the watcher publishes /tasks/exit and completes the Wait calls. For the init process
the published exit is recorded in the bundle (`exit-published`) right after it is published,
so a restarted daemon, whose new watcher gets the same exit from the shim, does not publish it
a second time. /tasks/start always goes out before /tasks/exit: Start holds the task's
`publish_lock` from the shim's `start` until its event is out, and the watcher takes it too.

OOMs. Each task also has an OOM watcher thread holding the shim's `subscribe` event stream: an
`oom` event, or a subscription answering with a higher count than was published, becomes one
/tasks/oom. The count published is recorded in the bundle (`oom-published`), so a restarted
daemon's resubscription does not repeat OOMs it told of. Before the init's /tasks/exit the exit
watcher reads the shim's count (`state`), so an OOM that killed the init is out first.

Recovery (§4.3), on start: each bundle's shim is dialled. A live shim's task is registered
again with fresh watchers. A dead shim is cleaned up as containerd's cleanupAfterDeadShim does:
`dockyard-shim delete` (which kills the container through the runtime and reads the shim's
exit file), /tasks/exit with that status (255 when nothing better is known) unless it was
published already, /tasks/delete, then the rootfs is unmounted and the bundle removed. The same
clean-up runs when a watcher finds its shim gone while the daemon runs.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from google.protobuf import any_pb2, timestamp_pb2

from dockyard.api.events import task_pb2 as ev
from dockyard.containerd.events import EventBroker
from dockyard.containerd.identifiers import validate_identifier, validate_namespace
from dockyard.containerd.metadata import Containers
from dockyard.containerd.snapshots import Mount, Snapshotter
from dockyard.containerd.taskoptions import parse_create_options
from dockyard.errors import Conflict, InvalidArgument, NotFound, SystemFailure
from dockyard.shim.client import AttachStream, ShimClient
from dockyard.shim.jsonlog import rfc3339nano

from .bundle import Bundle

log = logging.getLogger(__name__)

BIN = os.path.dirname(sys.executable)
SHIM = os.path.join(BIN, "dockyard-shim")
DEFAULT_RUNTIME = os.path.join(BIN, "dockyard-runc")
CALL_TIMEOUT = 60.0      # a shim call that runs the runtime (create, delete, ps …)
CONNECT_TIMEOUT = 5.0    # dialling a shim on recovery: a hung shim must not hold up start-up
EXIT_PUBLISH_WAIT = 10.0  # Delete waits this long for the watcher to publish the exit first
UNKNOWN_EXIT = 255

def _log_path_option(opts: dict) -> str:
    """The `log_path` option checked: absolute, normalized, its directory there, not a directory."""
    value = opts.get("log_path") or ""
    if not value:
        return ""
    if not isinstance(value, str) or not os.path.isabs(value) or "\0" in value:
        raise InvalidArgument(f"log_path {value!r} must be an absolute path")
    path = os.path.normpath(value)
    if not os.path.isdir(os.path.dirname(path)):
        raise InvalidArgument(f"log_path {value!r}: directory {os.path.dirname(path)} does not exist")
    if os.path.isdir(path):
        raise InvalidArgument(f"log_path {value!r} is a directory")
    return path


def timestamp(rfc3339: str) -> timestamp_pb2.Timestamp | None:
    if not rfc3339:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromJsonString(rfc3339)
    return ts


@dataclass
class Process:
    """The daemon's bookkeeping of one process; the shim has the truth."""
    exec_id: str  # "" for the init process
    pid: int = 0
    exit_status: int = 0
    exited_at: str = ""
    exited: threading.Event = field(default_factory=threading.Event)


class Task:
    def __init__(self, ns: str, cid: str, bundle: Bundle, record: dict):
        self.namespace, self.id, self.bundle, self.record = ns, cid, bundle, record
        self.shim_dir = os.path.join(record["shim_state_dir"], ns, cid)
        self.socket = os.path.join(self.shim_dir, "shim.sock")
        self.init = Process("")
        self.execs: dict[str, Process] = {}
        self.publish_lock = threading.Lock()
        self.oom_lock = threading.Lock()
        self.oom_published = 0  # the shim's oom_kills count up to which /tasks/oom is out
        self.deleting = False
        self.gone = False  # deleted or cleaned up: no longer registered

    @property
    def log_path(self) -> str:
        """The json-file log the shim writes: the create option's path, or the bundle's."""
        return str(self.record.get("log_path") or self.bundle.log_path)

    def client(self, timeout: float | None = CALL_TIMEOUT) -> ShimClient:
        return ShimClient(self.socket, timeout=timeout)

    def process(self, exec_id: str) -> Process:
        if not exec_id:
            return self.init
        proc = self.execs.get(exec_id)
        if proc is None:
            raise NotFound(f"exec {exec_id!r} not found in task {self.id}")
        return proc

    def shim_args(self) -> list[str]:
        r = self.record
        return ["--namespace", self.namespace, "--id", self.id, "--bundle", self.bundle.path,
                "--state-dir", r["shim_state_dir"], "--runtime", r["runtime"],
                "--runtime-root", r["runtime_root"]]


class TaskManager:
    def __init__(self, state: str, containers: Containers, snapshotter: Snapshotter, events: EventBroker):
        self.tasks_dir = os.path.join(state, "tasks")
        self.shims_dir = os.path.join(state, "shims")
        self.runtime_dir = os.path.join(state, "runc")
        self._containers, self._snapshotter, self._events = containers, snapshotter, events
        self._lock = threading.Lock()
        self._tasks: dict[tuple[str, str], Task] = {}
        self._creating: set[tuple[str, str]] = set()
        self._closing = False
        for d in (self.tasks_dir, self.shims_dir, self.runtime_dir):
            os.makedirs(d, mode=0o711, exist_ok=True)
        self.restore()

    def close(self) -> None:
        """The shims and their containers go on; the watchers (daemon threads) end with us."""
        self._closing = True

    # -- lookup ----------------------------------------------------------------------------------

    def get(self, ns: str, cid: str) -> Task:
        with self._lock:
            task = self._tasks.get((ns, cid))
        if task is None:
            raise NotFound(f"task {cid} not found in namespace {ns}")
        return task

    def list(self, ns: str) -> list[Task]:
        with self._lock:
            return sorted((t for (n, _), t in self._tasks.items() if n == ns), key=lambda t: t.id)

    def _unregister(self, task: Task) -> bool:
        with self._lock:
            if self._tasks.get((task.namespace, task.id)) is not task:
                return False
            del self._tasks[(task.namespace, task.id)]
            task.gone = True
            return True

    def _publish(self, task: Task, topic: str, event) -> None:
        try:
            self._events.publish(task.namespace, topic, event)
        except Exception as e:  # noqa: BLE001 - an event must never break the task's life
            log.error("publishing an event failed", extra={"fields": {"topic": topic, "error": str(e)}})

    # -- create ----------------------------------------------------------------------------------

    def create(self, ns: str, cid: str, rootfs: list[Mount], terminal: bool = False,
               options: any_pb2.Any | None = None) -> Task:
        validate_namespace(ns)
        container = self._containers.get(ns, cid)
        opts = parse_create_options(options)
        key = (ns, cid)
        with self._lock:
            if key in self._tasks or key in self._creating:
                raise Conflict(f"task {cid} already exists in namespace {ns}")
            self._creating.add(key)
        try:
            task = self._create(ns, container, rootfs, terminal, opts)
        finally:
            with self._lock:
                self._creating.discard(key)
        self._publish(task, "/tasks/create", ev.TaskCreate(
            container_id=cid, bundle=task.bundle.path, pid=task.init.pid,
            io=ev.TaskIO(terminal=bool(task.record.get("terminal")))))
        return task

    def _create(self, ns: str, container, rootfs: list[Mount], terminal: bool, opts: dict) -> Task:
        cid = container.id
        runtime = container.runtime.name if os.path.isabs(container.runtime.name) else DEFAULT_RUNTIME
        spec = copy.deepcopy(container.spec)
        process = spec.get("process")
        if not isinstance(process, dict):
            raise InvalidArgument(f"container {cid}: the spec has no process")
        terminal = bool(terminal or process.get("terminal"))
        process["terminal"] = terminal
        mounts = list(rootfs)
        if not mounts and opts.get("rootfs"):
            source = str(opts["rootfs"])
            if not os.path.isabs(source) or not os.path.isdir(source):
                raise InvalidArgument(f"rootfs {source!r} is not an absolute path to a directory")
            mounts = [Mount("bind", source, ["rbind"])]
        if not mounts and container.snapshot_key:
            mounts = self._snapshotter.mounts(ns, container.snapshot_key)
        log_path = _log_path_option(opts)
        root = spec.setdefault("root", {})
        if mounts:
            root["path"] = "rootfs"
        elif not os.path.isabs(str(root.get("path", ""))):
            raise InvalidArgument(f"container {cid} has no root filesystem: give rootfs mounts, "
                                  "a snapshot key, the rootfs option, or an absolute root.path")

        bundle = Bundle(os.path.join(self.tasks_dir, ns, cid))
        try:
            bundle.make()
        except FileExistsError:
            raise Conflict(f"task {cid}: bundle {bundle.path} exists (a task being cleaned up?)") from None
        record = {"runtime": runtime, "runtime_root": os.path.join(self.runtime_dir, ns),
                  "shim_state_dir": self.shims_dir, "rootfs_mounted": bool(mounts), "terminal": terminal}
        if log_path:
            record["log_path"] = log_path
        task = Task(ns, cid, bundle, record)
        shim_started = False
        try:
            bundle.write_record(record)  # first: a crash from here on is cleaned up on restart
            if mounts:
                bundle.mount_rootfs(mounts)
            bundle.write_config(spec)
            self._start_shim(task, terminal, bool(opts.get("stdin")),
                             int(opts.get("log_max_size", -1)), int(opts.get("log_max_file", 1)))
            shim_started = True
            with task.client() as c:
                task.init.pid = c.create()
        except BaseException:
            if shim_started:
                self._stop_shim(task)
            try:
                bundle.remove()
            except Exception as e:  # noqa: BLE001 - report the create's own error
                log.error("removing a failed task's bundle", extra={"fields": {"id": cid, "error": str(e)}})
            raise
        with self._lock:
            self._tasks[(ns, cid)] = task
        self._watch(task, task.init)
        self._watch_oom(task)
        return task

    def _start_shim(self, task: Task, terminal: bool, stdin: bool, log_max_size: int, log_max_file: int) -> None:
        argv = [SHIM, "start", *task.shim_args(), "--log-path", task.log_path,
                "--log-max-size", str(log_max_size), "--log-max-file", str(log_max_file)]
        argv += ["--tty"] * terminal + ["--stdin"] * stdin
        try:
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=CALL_TIMEOUT, cwd=task.bundle.path)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SystemFailure(f"dockyard-shim start: {e}") from None
        if r.returncode != 0:
            lines = r.stderr.strip().splitlines()
            raise SystemFailure(lines[-1] if lines else f"dockyard-shim start: exit status {r.returncode}")
        task.socket = r.stdout.strip() or task.socket

    def _stop_shim(self, task: Task) -> None:
        """Ends a shim with no task in it; if it will not answer, `dockyard-shim delete`."""
        try:
            with task.client() as c:
                try:
                    c.delete()
                except NotFound:
                    pass
                c.shutdown()
        except Exception:  # noqa: BLE001 - a hung or dead shim: force it
            self._shim_delete(task)

    def _shim_delete(self, task: Task) -> tuple[int, str]:
        """`dockyard-shim delete`: kills the shim and the container; the exit it knows."""
        try:
            r = subprocess.run([SHIM, "delete", *task.shim_args()], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=CALL_TIMEOUT)
            result = json.loads(r.stdout)
            return int(result["exit_status"]), str(result["exited_at"])
        except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError) as e:
            log.error("dockyard-shim delete failed", extra={"fields": {"id": task.id, "error": str(e)}})
            return UNKNOWN_EXIT, rfc3339nano(time.time_ns())

    # -- exits -----------------------------------------------------------------------------------

    def _watch(self, task: Task, proc: Process) -> None:
        threading.Thread(target=self._watcher, args=(task, proc), daemon=True,
                         name=f"exit-{task.id}-{proc.exec_id or 'init'}").start()

    def _watcher(self, task: Task, proc: Process) -> None:
        while True:
            try:
                with task.client(timeout=None) as c:
                    result = c.wait(proc.exec_id)
                break
            except NotFound:  # the exec was deleted
                return
            except (SystemFailure, OSError):
                if self._closing or task.deleting or task.gone:
                    return
                if self._shim_answers(task):
                    time.sleep(0.1)  # a dropped connection, not a dead shim: wait again
                    continue
                if proc.exec_id == "":
                    self._cleanup_dead_shim(task)
                return
            except Exception as e:  # noqa: BLE001 - a watcher must not die silently
                log.error("exit watcher failed", extra={"fields": {"id": task.id, "error": str(e)}})
                return
        if proc.exec_id == "":
            try:  # an OOM that killed the init goes out before its exit
                with task.client(timeout=CONNECT_TIMEOUT) as c:
                    self._ooms(task, int(c.state().get("oom_kills") or 0))
            except Exception:  # noqa: BLE001 - the OOM watcher still has it
                pass
        self._exited(task, proc, int(result["exit_status"]), str(result["exited_at"]))

    def _watch_oom(self, task: Task) -> None:
        threading.Thread(target=self._oom_watcher, args=(task,), daemon=True, name=f"oom-{task.id}").start()

    def _oom_watcher(self, task: Task) -> None:
        """Follows the shim's event stream until the shim closes it (it exited)."""
        while not (self._closing or task.gone):
            try:
                with task.client(timeout=CONNECT_TIMEOUT) as c:
                    stream = c.subscribe()
                with stream:
                    stream.settimeout(None)
                    self._ooms(task, stream.oom_kills)
                    while (event := stream.read()) is not None:
                        if event.get("event") == "oom":
                            self._ooms(task, int(event.get("oom_kills") or 0))
                return
            except (SystemFailure, OSError):
                if self._closing or task.deleting or task.gone or not self._shim_answers(task):
                    return  # a dead shim is the exit watcher's to clean up
                time.sleep(0.1)
            except Exception as e:  # noqa: BLE001 - a watcher must not die silently
                log.error("OOM watcher failed", extra={"fields": {"id": task.id, "error": str(e)}})
                return

    def _ooms(self, task: Task, oom_kills: int) -> None:
        """Publish /tasks/oom if the shim has counted OOMs not published yet. Idempotent."""
        with task.oom_lock:
            if oom_kills <= task.oom_published:
                return
            self._publish(task, "/tasks/oom", ev.TaskOOM(container_id=task.id))
            task.oom_published = oom_kills
            if not task.gone:
                try:
                    task.bundle.mark_oom_published(oom_kills)
                except OSError as e:
                    log.error("recording a published OOM", extra={"fields": {"id": task.id, "error": str(e)}})

    def _shim_answers(self, task: Task) -> bool:
        try:
            with task.client(timeout=CONNECT_TIMEOUT) as c:
                c.connect()
            return True
        except Exception:  # noqa: BLE001
            return False

    def _exited(self, task: Task, proc: Process, exit_status: int, exited_at: str) -> None:
        """Publish the exit once and wake the waiters. Idempotent."""
        with task.publish_lock:
            if proc.exited.is_set():
                return
            proc.exit_status, proc.exited_at = exit_status, exited_at
            published = task.bundle.exit_published() if proc.exec_id == "" else None
            if not (published and published.get("exited_at") == exited_at):
                self._publish(task, "/tasks/exit", ev.TaskExit(
                    container_id=task.id, id=proc.exec_id or task.id, pid=proc.pid,
                    exit_status=exit_status, exited_at=timestamp(exited_at)))
                if proc.exec_id == "":
                    try:
                        task.bundle.mark_exit_published(exit_status, exited_at)
                    except OSError as e:
                        log.error("recording a published exit", extra={"fields": {"id": task.id, "error": str(e)}})
            proc.exited.set()

    def _cleanup_dead_shim(self, task: Task) -> None:
        """containerd's cleanupAfterDeadShim (§4.3)."""
        with self._lock:
            if task.deleting or task.gone:
                return
            task.deleting = True
        log.warning("shim is gone: cleaning up its task", extra={"fields": {"namespace": task.namespace, "id": task.id}})
        exit_status, exited_at = self._shim_delete(task)
        if task.init.exited.is_set():  # it had exited, and we published it, before the shim died
            exit_status, exited_at = task.init.exit_status, task.init.exited_at
        self._exited(task, task.init, exit_status, exited_at)
        for proc in list(task.execs.values()):
            if not proc.exited.is_set():
                proc.exit_status, proc.exited_at = UNKNOWN_EXIT, exited_at
                proc.exited.set()
        self._finish_delete(task)

    def _finish_delete(self, task: Task) -> None:
        try:
            task.bundle.remove()
        except Exception as e:  # noqa: BLE001 - the task is gone all the same; the log says what is left
            log.error("removing the bundle", extra={"fields": {"id": task.id, "error": str(e)}})
        self._unregister(task)
        init = task.init
        self._publish(task, "/tasks/delete", ev.TaskDelete(
            container_id=task.id, id=task.id, pid=init.pid, exit_status=init.exit_status,
            exited_at=timestamp(init.exited_at)))

    def wait(self, ns: str, cid: str, exec_id: str = "", is_active=lambda: True,
             poll: float = 0.5) -> Process | None:
        """The process once it has exited; None if the caller went away first."""
        proc = self.get(ns, cid).process(exec_id)
        while not proc.exited.wait(poll):
            if not is_active():
                return None
        return proc

    # -- calls on a task -------------------------------------------------------------------------

    def start(self, ns: str, cid: str, exec_id: str = "") -> int:
        task = self.get(ns, cid)
        proc = task.process(exec_id)
        with task.publish_lock:  # /tasks/start before /tasks/exit
            with task.client() as c:
                pid = c.start(exec_id)
            proc.pid = pid
            if exec_id:
                self._publish(task, "/tasks/exec-started",
                              ev.TaskExecStarted(container_id=cid, exec_id=exec_id, pid=pid))
            else:
                self._publish(task, "/tasks/start", ev.TaskStart(container_id=cid, pid=pid))
        if exec_id:
            self._watch(task, proc)
        return pid

    def delete(self, ns: str, cid: str) -> Process:
        task = self.get(ns, cid)
        with self._lock:
            if task.deleting:
                raise Conflict(f"task {cid} is being deleted")
            task.deleting = True
        try:
            with task.client() as c:
                result = c.delete()
        except BaseException:
            task.deleting = False
            raise
        # The watcher publishes the exit; wait for it so /tasks/exit comes before /tasks/delete.
        if not task.init.exited.wait(EXIT_PUBLISH_WAIT):
            self._exited(task, task.init, int(result["exit_status"]), str(result["exited_at"]))
        try:
            with task.client() as c:
                c.shutdown()
        except Exception as e:  # noqa: BLE001 - make sure it is gone
            log.warning("shim shutdown failed: forcing", extra={"fields": {"id": cid, "error": str(e)}})
            self._shim_delete(task)
        self._finish_delete(task)
        return task.init

    def delete_process(self, ns: str, cid: str, exec_id: str) -> Process:
        if not exec_id:
            raise InvalidArgument("delete_process needs an exec id; delete the task instead")
        task = self.get(ns, cid)
        proc = task.process(exec_id)
        with task.client() as c:
            c.delete(exec_id)
        task.execs.pop(exec_id, None)
        return proc

    def state(self, ns: str, cid: str, exec_id: str = "") -> dict:
        """The shim's `state`; status "unknown" when the shim does not answer."""
        task = self.get(ns, cid)
        proc = task.process(exec_id)
        try:
            with task.client(timeout=CONNECT_TIMEOUT) as c:
                return c.state(exec_id)
        except SystemFailure:
            return {"id": cid, "exec_id": exec_id, "pid": proc.pid, "status": "unknown",
                    "exit_status": proc.exit_status, "exited_at": proc.exited_at, "terminal": False}

    def kill(self, ns: str, cid: str, signal: int, all: bool = False, exec_id: str = "") -> None:  # noqa: A002
        task = self.get(ns, cid)
        task.process(exec_id)
        with task.client() as c:
            c.kill(signal, all=all, exec_id=exec_id)

    def exec(self, ns: str, cid: str, exec_id: str, process: dict, terminal: bool, stdin: bool) -> None:
        validate_identifier(exec_id, "exec id")
        task = self.get(ns, cid)
        if exec_id in task.execs:
            raise Conflict(f"exec {exec_id!r} already exists in task {cid}")
        process = dict(process)
        process["terminal"] = bool(terminal or process.get("terminal"))
        with task.client() as c:
            c.exec(exec_id, process, stdin=stdin)
        task.execs[exec_id] = Process(exec_id)
        self._publish(task, "/tasks/exec-added", ev.TaskExecAdded(container_id=cid, exec_id=exec_id))

    def pause(self, ns: str, cid: str) -> None:
        with self.get(ns, cid).client() as c:
            c.pause()
        self._publish(self.get(ns, cid), "/tasks/paused", ev.TaskPaused(container_id=cid))

    def resume(self, ns: str, cid: str) -> None:
        with self.get(ns, cid).client() as c:
            c.resume()
        self._publish(self.get(ns, cid), "/tasks/resumed", ev.TaskResumed(container_id=cid))

    def pids(self, ns: str, cid: str) -> list[dict]:
        with self.get(ns, cid).client() as c:
            return c.pids()

    def stats(self, ns: str, cid: str) -> dict:
        with self.get(ns, cid).client() as c:
            return c.stats()

    def update(self, ns: str, cid: str, resources: dict) -> None:
        with self.get(ns, cid).client() as c:
            c.update(resources)

    def resize(self, ns: str, cid: str, exec_id: str, width: int, height: int) -> None:
        with self.get(ns, cid).client() as c:
            c.resize(width, height, exec_id=exec_id)

    def close_stdin(self, ns: str, cid: str, exec_id: str = "") -> None:
        with self.get(ns, cid).client() as c:
            c.close_stdin(exec_id)

    def attach(self, ns: str, cid: str, exec_id: str = "", stdin: bool = False) -> tuple[AttachStream, Process]:
        """The shim's attach stream of the process (shim/protocol.py: the init's output from
        now on, an exec's from its start if this is its first attach), without a read timeout;
        and our bookkeeping of the process, whose `exited` tells the exit should the stream end
        without it. The caller closes the stream."""
        task = self.get(ns, cid)
        proc = task.process(exec_id)
        with task.client() as c:
            stream = c.attach(exec_id, stdin=stdin)
        stream.settimeout(None)
        return stream, proc

    # -- recovery --------------------------------------------------------------------------------

    def restore(self) -> None:
        """Reconnect to the shims of the bundles left in the state dir (§4.3)."""
        for ns in sorted(os.listdir(self.tasks_dir)):
            ns_dir = os.path.join(self.tasks_dir, ns)
            for cid in sorted(os.listdir(ns_dir)) if os.path.isdir(ns_dir) else ():
                try:
                    self._restore_one(ns, cid)
                except Exception as e:  # noqa: BLE001 - one broken bundle must not stop the daemon
                    log.error("restoring a task failed", extra={"fields": {"namespace": ns, "id": cid, "error": str(e)}})
            try:
                os.rmdir(ns_dir)
            except OSError:
                pass

    def _restore_one(self, ns: str, cid: str) -> None:
        bundle = Bundle(os.path.join(self.tasks_dir, ns, cid))
        record = bundle.record()
        if record is None:  # died before the record was written: nothing was started
            log.info("removing an incomplete bundle", extra={"fields": {"namespace": ns, "id": cid}})
            bundle.remove()
            return
        task = Task(ns, cid, bundle, record)
        try:
            with task.client(timeout=CONNECT_TIMEOUT) as c:
                c.connect()
                state = c.state()
                pids = c.pids() if state.get("status") not in ("stopped",) else []
        except NotFound:  # a live shim with no task: the daemon died during create
            self._stop_shim(task)
            bundle.remove()
            return
        except SystemFailure:
            with self._lock:
                self._tasks[(ns, cid)] = task
            self._cleanup_dead_shim(task)
            return
        task.init.pid = int(state.get("pid") or 0)
        task.oom_published = bundle.oom_published()
        for p in pids:
            if p.get("exec_id"):
                task.execs[p["exec_id"]] = Process(p["exec_id"], pid=int(p["pid"]))
        with self._lock:
            self._tasks[(ns, cid)] = task
        for proc in (task.init, *task.execs.values()):
            self._watch(task, proc)
        self._watch_oom(task)
        log.info("reconnected to shim", extra={"fields": {"namespace": ns, "id": cid, "pid": task.init.pid}})
