"""The shim test harness: each test gets a short temp dir (unix socket paths are limited to
108 bytes) holding the state dir, the runtime's --root, bundles and logs, and starts shims
with `dockyard-shim start`. While shim tests run, pytest is the child subreaper, so the shims
(after their double fork) are re-parented to it and reaped by pid here, not left as zombies
under a PID 1 that may not reap. Teardown kills what the test started, by pid: shims, then
containers (`dockyard-runc delete --force`), removes their cgroups and the temp dir, and
checks that nothing was left behind."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

from tests.fixtures import busybox
from tests.fixtures.host import cgroup_roots, mounts_under, remove_cgroup

BIN = os.path.dirname(sys.executable)
SHIM = os.path.join(BIN, "dockyard-shim")
RUNC = os.path.join(BIN, "dockyard-runc")
CGROUP_PARENT = "dockyard-test"
NAMESPACE = "shimtest"


def _prctl_subreaper(on: bool) -> None:
    from dockyard.linux.prctl import PR_SET_CHILD_SUBREAPER, prctl
    prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0)


def zombie_children() -> list[int]:
    """Our own children that have exited and wait to be reaped."""
    me, found = os.getpid(), []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == me:
            found.append(int(name))
    return found


def reap(pid: int, timeout: float = 10.0) -> bool:
    """Wait for our child `pid` to exit and reap it; False if it is still running."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return not os.path.exists(f"/proc/{pid}")
        if done:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Shim:
    def __init__(self, harness, cid, bundle, socket, log_path):
        self.harness, self.id, self.bundle, self.socket, self.log_path = harness, cid, bundle, socket, log_path
        self.dir = os.path.dirname(socket)
        with open(os.path.join(self.dir, "shim.pid")) as f:
            self.pid = int(f.read())

    def client(self, timeout: float = 30):
        from dockyard.shim.client import ShimClient
        return ShimClient(self.socket, timeout=timeout)

    def log_entries(self, suffix: str = "") -> list[dict]:
        with open(self.log_path + suffix) as f:
            return [json.loads(line) for line in f]

    def stop(self) -> None:
        """delete + shutdown through the protocol, then reap the shim."""
        with self.client() as c:
            try:
                c.delete()
            except Exception:  # noqa: BLE001 - already deleted, or never created
                pass
            c.shutdown()
        assert reap(self.pid), f"shim {self.pid} did not exit after shutdown"


class Harness:
    def __init__(self, rootfs: str):
        self.rootfs = rootfs
        self.base = tempfile.mkdtemp(prefix="dysh-", dir="/tmp")
        self.state = os.path.join(self.base, "state")
        self.runtime_root = os.path.join(self.base, "runc")
        self.shims: list[Shim] = []
        self.ids: list[str] = []
        self.cgroups: list[str] = []

    def bundle(self, args, terminal: bool = False) -> str:
        path = os.path.join(self.base, "bundle-" + uuid.uuid4().hex[:8])
        os.makedirs(path)
        shutil.copytree(self.rootfs, os.path.join(path, "rootfs"), symlinks=True)
        config = busybox.default_spec(args)
        config["process"]["terminal"] = terminal
        config["root"]["readonly"] = False
        cgroup = f"/{CGROUP_PARENT}/{uuid.uuid4().hex[:12]}"
        config["linux"]["cgroupsPath"] = cgroup
        self.cgroups.append(cgroup)
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(config, f)
        return path

    def start_argv(self, cid: str, bundle: str, *extra: str) -> list[str]:
        return [SHIM, "start", "--namespace", NAMESPACE, "--id", cid, "--bundle", bundle,
                "--state-dir", self.state, "--runtime-root", self.runtime_root, *extra]

    def start(self, args, tty: bool = False, stdin: bool = False, log: bool = True,
              max_size: int | None = None, max_file: int | None = None, cid: str | None = None) -> Shim:
        cid = cid or "c" + uuid.uuid4().hex[:10]
        bundle = self.bundle(args, terminal=tty)
        extra = []
        log_path = os.path.join(self.base, f"{cid}-json.log") if log else None
        if log_path:
            extra += ["--log-path", log_path]
        if max_size is not None:
            extra += ["--log-max-size", str(max_size)]
        if max_file is not None:
            extra += ["--log-max-file", str(max_file)]
        extra += ["--tty"] * tty + ["--stdin"] * stdin
        self.ids.append(cid)
        r = subprocess.run(self.start_argv(cid, bundle, *extra), capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, f"dockyard-shim start: rc={r.returncode} {r.stderr}"
        socket = r.stdout.strip()
        shim = Shim(self, cid, bundle, socket, log_path)
        self.shims.append(shim)
        return shim

    def runc(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([RUNC, "--root", self.runtime_root, *args], capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)

    def cleanup(self) -> list[str]:
        """Undo everything; returns what was found left over (before it was removed)."""
        leftovers = []
        for shim in self.shims:
            if alive(shim.pid):
                leftovers.append(f"shim {shim.pid} still running")
                os.kill(shim.pid, signal.SIGKILL)
            reap(shim.pid)
        for cid in self.ids:
            if os.path.exists(os.path.join(self.runtime_root, cid)):
                leftovers.append(f"container {cid} still known to the runtime")
                self.runc("delete", "--force", cid)
        for pid in zombie_children():
            reap(pid, 1)
        for cgroup in self.cgroups:
            leftovers += [f"cgroup {path}" for path in remove_cgroup(cgroup)]
        for target in sorted(mounts_under(self.base), key=len, reverse=True):
            leftovers.append(f"mount {target}")
            subprocess.run(["umount", "-l", target], capture_output=True)
        if os.path.isdir(self.state) and os.listdir(self.state):
            leftovers.append(f"state dir entries {os.listdir(self.state)}")
        shutil.rmtree(self.base, ignore_errors=True)
        return leftovers


@pytest.fixture(scope="session")
def shim_rootfs(tmp_path_factory):
    built = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                         "build", "fixtures", "busybox", "rootfs")
    if os.path.isfile(os.path.join(built, "bin", "busybox")):
        return built
    dest = str(tmp_path_factory.mktemp("busybox") / "rootfs")
    busybox.build_rootfs(dest)
    return dest


@pytest.fixture(scope="module")
def subreaper():
    _prctl_subreaper(True)
    yield
    _prctl_subreaper(False)
    for pid in zombie_children():
        reap(pid, 1)


@pytest.fixture
def harness(subreaper, shim_rootfs):
    h = Harness(shim_rootfs)
    yield h
    leftovers = h.cleanup()
    for root in cgroup_roots():  # the shared parent, if no one else uses it now
        try:
            os.rmdir(os.path.join(root, CGROUP_PARENT))
        except OSError:
            pass
    assert not leftovers, f"left behind: {leftovers}"
