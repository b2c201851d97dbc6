"""Tasks end to end: a real dockyard-containerd subprocess, its shims, dockyard-runc and a
busybox rootfs (bound read-only into each bundle as `dockyard-ctr run --rootfs` does), driven
through the generated gRPC stubs.

pytest is made the child subreaper (as in tests/shim), so the shims, which double-fork away
from the daemon, and any container init orphaned by a killed shim are re-parented to it and
reaped here, by pid. The daemon logs to a file (a pipe nobody reads would fill up and block
it). Teardown SIGKILLs the daemon, then whatever is left, by pid: shims, containers (runtime
`delete --force`), mounts, cgroups, the temp dir; and fails the test if anything was left.
"""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import grpc
import pytest
from google.protobuf import any_pb2

from dockyard.api.services.containers.v1 import containers_pb2 as cpb
from dockyard.api.services.containers.v1 import containers_pb2_grpc
from dockyard.api.services.events.v1 import events_pb2, events_pb2_grpc
from dockyard.api.services.tasks.v1 import tasks_pb2 as tpb
from dockyard.api.services.tasks.v1 import tasks_pb2_grpc
from dockyard.api.events import task_pb2
from dockyard.containerd.daemon import client
from dockyard.containerd.tasks import create_options
from tests.fixtures import busybox
from tests.fixtures.host import cgroup_roots, mounts_under, remove_cgroup
from tests.shim.conftest import alive, reap, shim_rootfs, subreaper, wait_for, zombie_children  # noqa: F401

BIN = os.path.dirname(sys.executable)
DAEMON = os.path.join(BIN, "dockyard-containerd")
RUNC = os.path.join(BIN, "dockyard-runc")
NS = "tasktest"
CGROUP_PARENT = "dockyard-test"
SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="task tests run containers: they need root")


class Events:
    """A Subscribe stream read by a thread into `seen` (topic, decoded event)."""

    def __init__(self, env, filters=()):
        self.seen: list[tuple[str, object]] = []
        self._cond = threading.Condition()
        self._call = env.events.Subscribe(events_pb2.SubscribeRequest(filters=list(filters)))
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        # The server subscribes when the call reaches it: publish until our own probe comes back.
        def probed():
            env.events.Publish(events_pb2.PublishRequest(topic="/tasks/probe", event=any_pb2.Any()))
            with self._cond:
                return self._cond.wait_for(lambda: any(t == "/tasks/probe" for t, _ in self.seen), 0.1)
        wait_for(probed, 30, "the subscription to be served")

    def _read(self):
        try:
            for envelope in self._call:
                event = envelope.event
                decoded = event
                for cls in (task_pb2.TaskExit, task_pb2.TaskStart, task_pb2.TaskCreate, task_pb2.TaskDelete,
                            task_pb2.TaskPaused, task_pb2.TaskResumed, task_pb2.TaskExecAdded,
                            task_pb2.TaskExecStarted, task_pb2.TaskOOM):
                    if event.Is(cls.DESCRIPTOR):
                        decoded = cls()
                        event.Unpack(decoded)
                with self._cond:
                    self.seen.append((envelope.topic, decoded))
                    self._cond.notify_all()
        except grpc.RpcError:
            pass

    def wait(self, predicate, what: str = "events", timeout: float = 30):
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.seen):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}; seen {[t for t, _ in self.seen]}")
                self._cond.wait(left)

    def of(self, topic: str, container_id: str | None = None) -> list:
        with self._cond:
            return [e for t, e in self.seen if t == topic
                    and (container_id is None or getattr(e, "container_id", None) == container_id)]

    def close(self):
        self._call.cancel()
        self._thread.join(5)


class Env:
    def __init__(self, rootfs: str):
        self.rootfs = rootfs
        self.base = tempfile.mkdtemp(prefix="dyt-", dir="/tmp")
        self.address = os.path.join(self.base, "containerd.sock")
        self.root = os.path.join(self.base, "root")
        self.state = os.path.join(self.base, "state")
        self.log = os.path.join(self.base, "daemon.log")
        self.proc: subprocess.Popen | None = None
        self.channel = None
        self.cgroups: list[str] = []
        self.subscriptions: list[Events] = []

    # -- the daemon ------------------------------------------------------------------------------

    def start(self) -> "Env":
        offset = os.path.getsize(self.log) if os.path.exists(self.log) else 0
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen([DAEMON, "--address", self.address, "--root", self.root,
                                          "--state", self.state, "--log-level", "debug"],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)

        def serving():
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited: {self.log_text()[offset:]}")
            return 'msg="serving"' in self.log_text()[offset:]
        wait_for(serving, 30, "the daemon to serve")
        self.channel = client.connect(self.address, timeout=15)
        ns = client.namespaced(self.channel, NS)
        self.tasks = tasks_pb2_grpc.TasksStub(ns)
        self.containers = containers_pb2_grpc.ContainersStub(ns)
        self.events = events_pb2_grpc.EventsStub(ns)
        return self

    def kill_daemon(self) -> None:
        for sub in self.subscriptions:
            sub.close()
        self.subscriptions.clear()
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(15)
            self.proc = None

    def restart(self) -> "Env":
        self.kill_daemon()
        return self.start()

    def log_text(self) -> str:
        with open(self.log, errors="replace") as f:
            return f.read()

    def subscribe(self, *filters: str) -> Events:
        sub = Events(self, filters)
        self.subscriptions.append(sub)
        return sub

    # -- containers and tasks --------------------------------------------------------------------

    def container(self, args: list[str], cid: str | None = None, runtime: str = "dockyard-runc",
                  terminal: bool = False) -> str:
        cid = cid or "c" + uuid.uuid4().hex[:10]
        spec = busybox.default_spec(args)
        spec["process"]["terminal"] = terminal
        cgroup = f"/{CGROUP_PARENT}/{uuid.uuid4().hex[:12]}"
        spec["linux"]["cgroupsPath"] = cgroup
        self.cgroups.append(cgroup)
        self.containers.Create(cpb.CreateContainerRequest(container=cpb.Container(
            id=cid, runtime=cpb.Container.Runtime(name=runtime),
            spec=any_pb2.Any(type_url=SPEC_TYPE_URL, value=json.dumps(spec).encode()))))
        return cid

    def create_task(self, cid: str, **options) -> int:
        return self.tasks.Create(tpb.CreateTaskRequest(
            container_id=cid, options=create_options(rootfs=self.rootfs, **options))).pid

    def run(self, args: list[str]) -> tuple[str, int]:
        """A started task; (container id, pid)."""
        cid = self.container(args)
        self.create_task(cid)
        return cid, self.tasks.Start(tpb.StartRequest(container_id=cid)).pid

    def bundle(self, cid: str) -> str:
        return os.path.join(self.state, "tasks", NS, cid)

    def shim_pid(self, cid: str) -> int:
        with open(os.path.join(self.state, "shims", NS, cid, "shim.pid")) as f:
            return int(f.read())

    def log_lines(self, cid: str) -> list[str]:
        with open(os.path.join(self.bundle(cid), "json.log")) as f:
            return [json.loads(line)["log"] for line in f]

    def assert_clean(self, cid: str) -> None:
        """Nothing of the task left: bundle, shim, runtime state, mounts."""
        wait_for(lambda: not os.path.exists(os.path.join(self.state, "shims", NS, cid)), 10, "the shim to go")
        assert not os.path.exists(self.bundle(cid))
        assert not os.path.exists(os.path.join(self.state, "runc", NS, cid))
        assert not [m for m in mounts_under(self.base) if cid in m]

    # -- teardown --------------------------------------------------------------------------------

    def cleanup(self) -> list[str]:
        leftovers = []
        self.kill_daemon()
        for pid_file in glob.glob(os.path.join(self.state, "shims", "*", "*", "shim.pid")):
            try:
                with open(pid_file) as f:
                    pid = int(f.read())
            except (OSError, ValueError):
                continue
            if alive(pid):
                leftovers.append(f"shim {pid_file}")
                os.kill(pid, signal.SIGKILL)
            reap(pid, 5)
        for state in glob.glob(os.path.join(self.state, "runc", "*", "*")):
            leftovers.append(f"container {state}")
            subprocess.run([RUNC, "--root", os.path.dirname(state), "delete", "--force",
                            os.path.basename(state)], capture_output=True, timeout=60)
        for pid in zombie_children():
            reap(pid, 1)
        for target in sorted(mounts_under(self.base), key=len, reverse=True):
            leftovers.append(f"mount {target}")
            subprocess.run(["umount", "-l", target], capture_output=True)
        for cgroup in self.cgroups:
            leftovers += [f"cgroup {path}" for path in remove_cgroup(cgroup)]
        bundles = glob.glob(os.path.join(self.state, "tasks", "*", "*"))
        leftovers += [f"bundle {b}" for b in bundles]
        shutil.rmtree(self.base, ignore_errors=True)
        return leftovers


@pytest.fixture
def env(subreaper, shim_rootfs):  # noqa: F811
    e = Env(shim_rootfs)
    e.start()
    yield e
    leftovers = e.cleanup()
    for pid in zombie_children():
        reap(pid, 1)
    for root in cgroup_roots():
        try:
            os.rmdir(os.path.join(root, CGROUP_PARENT))
        except OSError:
            pass
    assert not leftovers, f"left behind: {leftovers}"
