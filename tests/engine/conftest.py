"""A real dockyardd for the engine tests: its own data-root, exec-root, socket, cgroup parent and
dockyard-containerd (started by dockyardd itself, as dockerd starts containerd), all under one
short temporary directory; busybox loaded into the engine's containerd namespace ("moby") with
dockyard-ctr and known as busybox:latest.

    def test_x(engine):
        status, headers, body = engine.http("GET", "/containers/json")
        r = engine.docker("run", "--rm", "busybox", "echo", "hi")     # /usr/local/bin/docker

`engine` is module-scoped (one daemon per test module; call `engine.reset()` between tests that
must not see each other's containers); `fresh_engine` is a private one for a single test.
pytest is the child subreaper (tests/shim), so the shims that double-fork away from
dockyard-containerd are re-parented to it and reaped here. Teardown removes every container
through the API, stops dockyardd, then kills what is left by pid — dockyard-containerd, shims,
runtime state — unmounts, removes the cgroups and the directory, and fails if it had to clean
up anything but the daemons."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

from tests.fixtures import busybox
from tests.fixtures.host import mounts_under, remove_cgroup_tree
from tests.shim.conftest import alive, reap, subreaper, zombie_children  # noqa: F401

BIN = os.path.dirname(sys.executable)
DOCKYARDD = os.path.join(BIN, "dockyardd")
CTR = os.path.join(BIN, "dockyard-ctr")
RUNC = os.path.join(BIN, "dockyard-runc")
DOCKER = "/usr/local/bin/docker"
NAMESPACE = "moby"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the engine runs containers: it needs root")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class Engine:
    def __init__(self, base: str | None = None, extra_args: tuple[str, ...] = ()):
        self.base = base or tempfile.mkdtemp(prefix="dye-", dir="/tmp")
        self.socket = os.path.join(self.base, "engine.sock")
        self.url = "unix://" + self.socket
        self.data_root = os.path.join(self.base, "root")
        self.exec_root = os.path.join(self.base, "exec")
        self.containerd_socket = os.path.join(self.exec_root, "containerd", "containerd.sock")
        self.config_file = os.path.join(self.base, "daemon.json")
        self.log = os.path.join(self.base, "dockyardd.log")
        self.cgroup_parent = "/dockyard-test-" + uuid.uuid4().hex[:8]
        # Networking of its own: a bridge name, the default bridge's subnet and the pool user
        # networks come from, none shared with another engine here (10.128-250.x: one /16 each).
        tag = uuid.uuid4().hex
        self.bridge = "dyt" + tag[:8]
        octet = 128 + int(tag[8:12], 16) % 123
        self.bip = f"10.{octet}.0.1/24"
        self.address_pool = f"base=10.{octet}.0.0/16,size=24"
        self.nft_table = "dockyard_" + hashlib.sha256(os.path.join(self.base, "root").encode()).hexdigest()[:8]
        self.extra_args = tuple(extra_args)
        self.proc: subprocess.Popen | None = None
        docker_config = os.path.join(self.base, "docker-config")
        os.makedirs(docker_config, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        self.env.update(DOCKER_HOST=self.url, DOCKER_CONFIG=docker_config)
        if not os.path.exists(self.config_file):
            with open(self.config_file, "w") as f:
                f.write("{}\n")

    # -- the daemon ------------------------------------------------------------------------------

    def argv(self) -> list[str]:
        return [DOCKYARDD, "-H", self.url, "--data-root", self.data_root, "--exec-root", self.exec_root,
                "--config-file", self.config_file, "--cgroup-parent", self.cgroup_parent,
                "--log-level", "debug", "--bridge", self.bridge, "--bip", self.bip,
                "--default-address-pool", self.address_pool, *self.extra_args]

    def start(self, timeout: float = 60) -> "Engine":
        offset = os.path.getsize(self.log) if os.path.exists(self.log) else 0
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"dockyardd exited with {self.proc.returncode}: {self.log_text()[offset:]}")
            try:
                if self.http("GET", "/_ping", timeout=2)[0] == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"dockyardd did not answer: {self.log_text()[offset:]}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Stops dockyardd (not its dockyard-containerd, which outlives it); its exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"dockyardd ignored signal {sig}")
        code, self.proc = self.proc.returncode, None
        return code

    def kill(self) -> int:
        return self.stop(signal.SIGKILL)

    def restart(self, kill: bool = False) -> "Engine":
        self.stop(signal.SIGKILL if kill else signal.SIGTERM)
        return self.start()

    def log_text(self) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def containerd_pid(self) -> int | None:
        try:
            with open(os.path.join(self.exec_root, "containerd", "dockyard-containerd.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    # -- clients ---------------------------------------------------------------------------------

    def http(self, method: str, path: str, body=None, headers: dict | None = None,
             timeout: float = 60) -> tuple[int, dict, bytes]:
        """One request on its own connection: (status, headers (lower-case names), body).
        A dict or list body is sent as JSON."""
        headers = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode()
        conn = _UnixConnection(self.socket, timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def json(self, method: str, path: str, body=None, expect: int | None = None, **kw):
        status, _, data = self.http(method, path, body, **kw)
        if expect is not None:
            assert status == expect, f"{method} {path}: {status} {data!r}"
        return json.loads(data) if data.strip() else None

    def docker(self, *args: str, input: str | bytes | None = None, timeout: float = 60,
               check: bool = False) -> subprocess.CompletedProcess:
        text = not isinstance(input, bytes)
        r = subprocess.run([DOCKER, *args], env=self.env, input=input, capture_output=True, text=text,
                           stdin=None if input is not None else subprocess.DEVNULL, timeout=timeout)
        if check:
            assert r.returncode == 0, f"docker {' '.join(args)}: rc={r.returncode}\n{r.stdout}{r.stderr}"
        return r

    def ctr(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([CTR, "--address", self.containerd_socket, "--namespace", NAMESPACE, *args],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)

    def load_busybox(self, archive: str) -> None:
        r = self.ctr("images", "load", "-i", archive)
        assert r.returncode == 0, f"dockyard-ctr images load: {r.stdout}{r.stderr}"

    # -- teardown --------------------------------------------------------------------------------

    def reset(self) -> None:
        """Removes every container through the API (when the containers API is there)."""
        status, _, data = self.http("GET", "/containers/json?all=1")
        if status != 200:
            return
        for c in json.loads(data):
            self.http("DELETE", f"/containers/{c['Id']}?force=1&v=1")

    def cleanup(self) -> list[str]:
        """Everything gone; what had to be removed by force (beyond the daemons) is returned."""
        leftovers: list[str] = []
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.reset()
            except OSError:
                pass
            self.stop()
        pid = self.containerd_pid()
        if pid is not None and alive(pid):
            os.kill(pid, signal.SIGTERM)
            if not reap(pid, 15):
                os.kill(pid, signal.SIGKILL)
                reap(pid, 5)
        state = os.path.join(self.exec_root, "containerd")
        for pid_file in glob.glob(os.path.join(state, "shims", "*", "*", "shim.pid")):
            try:
                with open(pid_file) as f:
                    shim = int(f.read())
            except (OSError, ValueError):
                continue
            if alive(shim):
                leftovers.append(f"shim {pid_file}")
                os.kill(shim, signal.SIGKILL)
            reap(shim, 5)
        for runc_state in glob.glob(os.path.join(state, "runc", "*", "*")):
            leftovers.append(f"container {runc_state}")
            subprocess.run([RUNC, "--root", os.path.dirname(runc_state), "delete", "--force",
                            os.path.basename(runc_state)], capture_output=True, timeout=60)
        for zombie in zombie_children():
            reap(zombie, 1)
        for target in sorted(mounts_under(self.base) + mounts_under(self.exec_root), key=len, reverse=True):
            leftovers.append(f"mount {target}")
            subprocess.run(["umount", "-l", target], capture_output=True)
        leftovers += [f"cgroup {p}" for p in remove_cgroup_tree(self.cgroup_parent)]
        leftovers += self._remove_network_leftovers()
        shutil.rmtree(self.base, ignore_errors=True)
        shutil.rmtree(self.exec_root, ignore_errors=True)
        return leftovers

    def bridges(self) -> list[str]:
        """The bridge names of this engine's networks (its network.db, readable after a SIGKILL)."""
        db = os.path.join(self.data_root, "network", "network.db")
        if not os.path.exists(db):
            return [self.bridge]
        with contextlib.closing(sqlite3.connect(db)) as conn:
            try:
                rows = conn.execute("SELECT bridge FROM networks WHERE bridge != ''").fetchall()
            except sqlite3.Error:
                rows = []
        return sorted({self.bridge, *(r[0] for r in rows)})

    def _remove_network_leftovers(self) -> list[str]:
        """Links enslaved to this engine's bridges, the bridges, its nft table: all should be gone."""
        leftovers = []
        for bridge in self.bridges():
            ports = subprocess.run(["ip", "-o", "link", "show", "master", bridge], capture_output=True, text=True)
            for line in ports.stdout.splitlines():
                port = line.split(":")[1].strip().split("@")[0]
                leftovers.append(f"link {port}")
                subprocess.run(["ip", "link", "del", port], capture_output=True)
            if subprocess.run(["ip", "link", "show", bridge], capture_output=True).returncode == 0:
                leftovers.append(f"bridge {bridge}")
                subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        if subprocess.run(["nft", "list", "table", "ip", self.nft_table], capture_output=True).returncode == 0:
            leftovers.append(f"nft table {self.nft_table}")
            subprocess.run(["nft", "delete", "table", "ip", self.nft_table], capture_output=True)
        return leftovers



@pytest.fixture(scope="session")
def busybox_archive(tmp_path_factory) -> str:
    """busybox:latest as `docker save` writes it."""
    built = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                         "build", "fixtures", "busybox", "busybox.docker.tar")
    if os.path.isfile(built):
        return built
    return str(busybox.build_docker_archive(tmp_path_factory.mktemp("busybox-archive") / "busybox.tar"))


def _engine(busybox_archive: str, extra_args: tuple[str, ...] = ()):
    e = Engine(extra_args=extra_args)
    try:
        e.start()
        e.load_busybox(busybox_archive)
    except BaseException:
        e.cleanup()
        raise
    return e


@pytest.fixture(scope="module")
def engine(subreaper, busybox_archive):  # noqa: F811
    e = _engine(busybox_archive)
    yield e
    leftovers = e.cleanup()
    assert not leftovers, f"left behind: {leftovers}"


@pytest.fixture
def fresh_engine(subreaper, busybox_archive):  # noqa: F811
    e = _engine(busybox_archive)
    yield e
    leftovers = e.cleanup()
    assert not leftovers, f"left behind: {leftovers}"


# -- helpers the engine tests share --------------------------------------------------------------

def docker(engine, *args, check=True, timeout=60):
    """The docker CLI against `engine`; by default a failure fails the test."""
    r = engine.docker(*args, timeout=timeout)
    if check:
        assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
    return r


def inspect(engine, name):
    status, _, body = engine.http("GET", f"/v1.45/containers/{name}/json")
    assert status == 200, body
    return json.loads(body)


def wait_for(predicate, timeout=60.0, interval=0.05):
    """predicate()'s first truthy value, polled until `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")
