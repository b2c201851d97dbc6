"""A private, throw-away containerd (Debian's 1.6) for driving an OCI runtime through the real
containerd-shim-runc-v2, as docker and kubernetes do.

Everything it owns lives under one short temp dir (unix socket paths are limited to 108 bytes):
its config, `--root`, `--state`, gRPC and ttrpc sockets, ctr's fifos and the runtimes' `--root`.
Two things containerd 1.6 and its shim put elsewhere and cannot be told otherwise:
  * the shim's socket, /run/containerd/s/<sha256(address/namespace/id)>: unique per instance
    (the hash covers our socket path), removed by the shim when it exits, and by `cleanup`
    if a shim was killed;
  * the container cgroups, /sys/fs/cgroup/<controller>/<namespace>/<id> (ctr's default spec
    puts `cgroupsPath` at /<namespace>/<id>): removed by the runtime's `delete`, and by
    `cleanup` for the ids this instance handed out.
`cleanup` undoes everything whatever state a failed test left: tasks, containers, shims (found
by our socket path in their command line, killed by pid), container processes (by cgroup),
mounts under the temp dir, cgroups, sockets, and the temp dir itself."""

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

from tests.fixtures.host import cgroup_roots, mounts_under, processes

NAMESPACE = "dockyard-test"
SHIM_SOCKET_DIR = "/run/containerd/s"
RUNTIME = "io.containerd.runc.v2"

# What an image import plus `ctr run` needs: content, metadata, the overlayfs snapshotter, the
# walking differ, gc, the v2 task runtime and the gRPC services. Everything else is off, the
# CRI plugin above all (it would start CNI, a streaming server and its own sandbox logic).
# (The legacy io.containerd.runtime.v1.linux stays: 1.6's tasks service won't load without it.)
DISABLED_PLUGINS = [
    "io.containerd.grpc.v1.cri",
    "io.containerd.internal.v1.restart",
    "io.containerd.internal.v1.opt",
    "io.containerd.internal.v1.tracing",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.snapshotter.v1.native",
]


def missing_tools() -> str | None:
    """Why a private containerd can't run here, or None."""
    if os.geteuid() != 0:
        return "containerd tests need root"
    missing = [t for t in ("containerd", "ctr", "containerd-shim-runc-v2") if not shutil.which(t)]
    if missing:
        return f"{', '.join(missing)} not found (install Debian's `containerd` package)"
    return None


class Containerd:
    def __init__(self):
        self.base = tempfile.mkdtemp(prefix="dyctd-", dir="/tmp")
        self.root = os.path.join(self.base, "root")
        self.state = os.path.join(self.base, "state")
        self.address = os.path.join(self.base, "containerd.sock")
        self.ttrpc_address = self.address + ".ttrpc"
        self.fifo_dir = os.path.join(self.base, "fifo")
        self.runc_root = os.path.join(self.base, "runc")
        self.config = os.path.join(self.base, "config.toml")
        self.log_path = os.path.join(self.base, "containerd.log")
        self.ids: set[str] = set()
        self.proc: subprocess.Popen | None = None
        self._log = None
        self._made_run_dirs = [d for d in ("/run/containerd", SHIM_SOCKET_DIR) if not os.path.exists(d)]
        os.makedirs(self.fifo_dir)

    # -- lifecycle --------------------------------------------------------------------------

    def write_config(self) -> None:
        q = lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'  # noqa: E731
        with open(self.config, "w") as f:
            f.write(f"""version = 2
root = {q(self.root)}
state = {q(self.state)}
disabled_plugins = [{", ".join(q(p) for p in DISABLED_PLUGINS)}]
oom_score = 0

[grpc]
  address = {q(self.address)}

[ttrpc]
  address = {q(self.ttrpc_address)}

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.monitor.v1.cgroups"]
  no_prometheus = true
""")

    def start(self, timeout: float = 20.0) -> None:
        self.write_config()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["containerd", "--config", self.config], stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited with {self.proc.returncode}:\n{self.log_tail()}")
            if os.path.exists(self.address) and self.ctr("version", timeout=5).returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError(f"containerd did not come up in {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._log:
            self._log.close()
            self._log = None

    # -- ctr ----------------------------------------------------------------------------------

    def ctr_argv(self, *args: str) -> list[str]:
        return ["ctr", "--address", self.address, "--namespace", NAMESPACE, *args]

    def ctr(self, *args: str, timeout: float = 30, input: bytes | None = None, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("stdin", None if input is not None else subprocess.DEVNULL)
        return subprocess.run(self.ctr_argv(*args), input=input, capture_output=True, timeout=timeout, **kw)

    def ok(self, *args: str, **kw) -> str:
        r = self.ctr(*args, **kw)
        assert r.returncode == 0, (f"ctr {' '.join(args)}: rc={r.returncode}\nstdout: {r.stdout!r}\n"
                                   f"stderr: {r.stderr.decode(errors='replace')}")
        return r.stdout.decode(errors="replace")

    def new_id(self, prefix: str = "c") -> str:
        cid = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.ids.add(cid)
        return cid

    def tasks(self) -> dict[str, tuple[int, str]]:
        """`ctr tasks ls`: {id: (pid, STATUS)}."""
        out = self.ok("tasks", "ls")
        tasks = {}
        for line in out.splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 3:
                tasks[fields[0]] = (int(fields[1]), fields[2])
        return tasks

    def wait_status(self, cid: str, status: str, timeout: float = 10.0) -> tuple[int, str]:
        deadline = time.monotonic() + timeout
        while True:
            task = self.tasks().get(cid)
            if (task and task[1] == status) or time.monotonic() > deadline:
                assert task and task[1] == status, f"task {cid}: want {status}, have {task}"
                return task
            time.sleep(0.05)

    def containers(self) -> list[str]:
        return self.ok("containers", "ls", "-q").split()

    # -- where things live ----------------------------------------------------------------------

    def bundle(self, cid: str) -> str:
        return os.path.join(self.state, "io.containerd.runtime.v2.task", NAMESPACE, cid)

    def runtime_state_dir(self, cid: str) -> str:
        """The OCI runtime's `--root` entry for cid (the shim passes --root <runc-root>/<ns>)."""
        return os.path.join(self.runc_root, NAMESPACE, cid)

    def shim_socket(self, cid: str) -> str:
        return os.path.join(SHIM_SOCKET_DIR, hashlib.sha256(os.path.join(self.address, NAMESPACE, cid).encode()).hexdigest())

    @staticmethod
    def cgroup_dirs(cid: str) -> list[str]:
        """The container's cgroup in every hierarchy where it exists."""
        return [d for d in (os.path.join(root, NAMESPACE, cid) for root in cgroup_roots()) if os.path.isdir(d)]

    # -- cleanup --------------------------------------------------------------------------------

    def reset(self) -> None:
        """Kill and delete every task, remove every container: the per-test cleanup."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            tasks = self.tasks()
        except AssertionError:
            tasks = {}
        for cid, (_, status) in tasks.items():
            if status == "PAUSED":
                self.ctr("tasks", "resume", cid, timeout=15)
            if status != "STOPPED":
                self.ctr("tasks", "kill", "--all", "-s", "SIGKILL", cid, timeout=15)
            self.ctr("tasks", "delete", "--force", cid, timeout=15)
        for cid in self.ctr("containers", "ls", "-q", timeout=15).stdout.decode().split():
            self.ctr("containers", "rm", cid, timeout=15)

    def cleanup(self) -> None:
        try:
            self.reset()
        except Exception:  # noqa: BLE001 - cleanup goes on whatever went wrong
            pass
        self.stop()
        self._kill_shims()
        self._kill_container_processes()
        self._unmount_all()
        self._remove_cgroups()
        for cid in self.ids:
            try:
                os.unlink(self.shim_socket(cid))
            except OSError:
                pass
        for d in reversed(self._made_run_dirs):
            _rmdir_tree_if_empty(d)
        shutil.rmtree(self.base, ignore_errors=True)

    def _kill_shims(self) -> None:
        """Shims outlive containerd by design: kill ours, found by our socket in their argv."""
        for pid, argv in processes():
            if argv and os.path.basename(argv[0]) == "containerd-shim-runc-v2" and self.address in argv:
                _kill(pid)

    def _kill_container_processes(self) -> None:
        for cid in self.ids:
            for d in self.cgroup_dirs(cid):
                freezer = os.path.join(d, "freezer.state")
                if os.path.exists(freezer):
                    try:
                        with open(freezer, "w") as f:
                            f.write("THAWED")
                    except OSError:
                        pass
                for pid in _read_pids(os.path.join(d, "cgroup.procs")):
                    _kill(pid)

    def _unmount_all(self) -> None:
        for target in sorted(mounts_under(self.base), key=len, reverse=True):
            subprocess.run(["umount", "-l", target], capture_output=True)

    def _remove_cgroups(self) -> None:
        deadline = time.monotonic() + 5
        for cid in self.ids:
            for d in self.cgroup_dirs(cid):
                while True:
                    try:
                        os.rmdir(d)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            break
                        time.sleep(0.05)
        for root in cgroup_roots():  # the namespace's parent, if nobody else uses it
            try:
                os.rmdir(os.path.join(root, NAMESPACE))
            except OSError:
                pass


def _read_pids(path: str) -> list[int]:
    try:
        with open(path) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _rmdir_tree_if_empty(path: str) -> None:
    """rmdir path and its empty subdirectories (never a file)."""
    if not os.path.isdir(path):
        return
    for entry in os.listdir(path):
        full = os.path.join(path, entry)
        if os.path.isdir(full) and not os.path.islink(full):
            _rmdir_tree_if_empty(full)
    try:
        os.rmdir(path)
    except OSError:
        pass
