"""dockyard-ctr end to end: a real dockyard-containerd (the tasks suite's `Env`: its own
socket, root and state under one temp dir, pytest the child subreaper so the shims are reaped
here), and dockyard-ctr run as a subprocess, as an operator runs it.

Each test gets its own namespace. ctr's spec puts a container's cgroup at /<namespace>/<id>:
teardown kills and deletes what the test left through dockyard-ctr itself, then Env's clean-up
removes whatever still remains by pid and path (and fails the test if it had to), and the
namespace's cgroup parent goes last."""

import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from tests.containerd.tasks.conftest import Env
from tests.fixtures.host import remove_cgroup
from tests.shim.conftest import reap, shim_rootfs, subreaper, zombie_children  # noqa: F401

CTR = os.path.join(os.path.dirname(sys.executable), "dockyard-ctr")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="dockyard-ctr tests run containers: they need root")


class Ctr:
    def __init__(self, env: Env, rootfs: str):
        self.env = env
        self.rootfs = rootfs
        self.namespace = "ctr-" + uuid.uuid4().hex[:8]

    def argv(self, *args: str, namespace: str | None = None) -> list[str]:
        return [CTR, "--address", self.env.address, "--namespace", namespace or self.namespace, *args]

    def __call__(self, *args: str, input: str | None = None, timeout: float = 60,
                 namespace: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args, namespace=namespace), input=input,
                              stdin=None if input is not None else subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)

    def ok(self, *args: str, **kw) -> str:
        r = self(*args, **kw)
        assert r.returncode == 0, f"dockyard-ctr {' '.join(args)}: rc={r.returncode}\n{r.stdout}{r.stderr}"
        return r.stdout

    def new_id(self) -> str:
        cid = "c" + uuid.uuid4().hex[:10]
        self.env.cgroups.append(f"/{self.namespace}/{cid}")
        return cid

    def table(self, *args: str) -> list[list[str]]:
        """The rows of a table command, header first, split on whitespace."""
        return [line.split() for line in self.ok(*args).splitlines()]

    def tasks(self) -> dict[str, tuple[int, str]]:
        return {row[0]: (int(row[1]), row[2]) for row in self.table("tasks", "ls")[1:]}

    def wait_status(self, cid: str, status: str, timeout: float = 10) -> tuple[int, str]:
        deadline = time.monotonic() + timeout
        while True:
            task = self.tasks().get(cid)
            if (task and task[1] == status) or time.monotonic() > deadline:
                assert task and task[1] == status, f"task {cid}: want {status}, have {task}"
                return task
            time.sleep(0.05)

    def reset(self) -> None:
        """Kill and delete every task, remove every container of our namespace."""
        for cid, (_, status) in self.tasks().items():
            if status == "PAUSED":
                self("tasks", "resume", cid)
            self("tasks", "kill", "--all", "-s", "SIGKILL", cid)
            self("tasks", "rm", "-f", cid)
        for cid in self.ok("containers", "ls", "-q").split():
            self("containers", "rm", cid)


@pytest.fixture
def ctr(subreaper, shim_rootfs):  # noqa: F811
    env = Env(shim_rootfs)
    env.start()
    rootfs = os.path.join(env.base, "rootfs")
    shutil.copytree(shim_rootfs, rootfs, symlinks=True)
    c = Ctr(env, rootfs)
    yield c
    try:
        c.reset()
    finally:
        leftovers = env.cleanup()
        for pid in zombie_children():
            reap(pid, 1)
        remove_cgroup(c.namespace, 1)  # the namespace's parent cgroup, as ctr makes /<ns>/<id>
    assert not leftovers, f"left behind: {leftovers}"
