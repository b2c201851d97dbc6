"""The runtime test harness, in crun's style: build a bundle, run it with a runtime, look at
what the container saw. Every behaviour test is parameterized over dockyard-runc, Debian's runc
and crun (where it runs on this host), so a difference from runc shows up as a failing case."""

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

import pytest

from dockyard.oci.defaults import default_spec
from tests.fixtures.host import cgroup_roots, mounts_under  # noqa: F401 (re-exported for tests)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OURS = os.path.join(os.path.dirname(sys.executable), "dockyard-runc")
PEERS = {"dockyard-runc": OURS, "runc": "/usr/sbin/runc", "crun": "/usr/bin/crun"}
CGROUP_PARENT = "dockyard-test"

if os.geteuid() != 0:
    pytest.skip("runtime tests need root", allow_module_level=True)


class Runtime:
    def __init__(self, name: str, path: str, root: str, prefix: list[str] = ()):
        self.name, self.path, self.root = name, path, root
        self.prefix = list(prefix)  # e.g. a command that sets up the runtime's view of the host

    @property
    def ours(self) -> bool:
        return self.name == "dockyard-runc"

    def __call__(self, *args, input=None, timeout=60, **kw) -> subprocess.CompletedProcess:
        # Files, not pipes: a detached container inherits our stdio and keeps pipes open.
        with tempfile.TemporaryFile("w+", errors="replace") as out, \
                tempfile.TemporaryFile("w+", errors="replace") as err:
            r = subprocess.run([*self.prefix, self.path, "--root", self.root, *args], input=input, timeout=timeout,
                               stdout=out, stderr=err, text=True, **kw)
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(r.args, r.returncode, out.read(), err.read())

    def ok(self, *args, **kw) -> str:
        r = self(*args, **kw)
        assert r.returncode == 0, f"{self.name} {' '.join(args)}: rc={r.returncode} {r.stderr}"
        return r.stdout

    def run(self, bundle: str, *args, cid: str | None = None, **kw) -> subprocess.CompletedProcess:
        return self("run", "--bundle", bundle, *args, cid or new_id(), **kw)

    def output(self, bundle: str) -> str:
        r = self.run(bundle)
        assert r.returncode == 0, f"{self.name} run: rc={r.returncode} {r.stderr}"
        return r.stdout

    def state(self, cid: str) -> dict:
        return json.loads(self.ok("state", cid))

    def cleanup(self) -> None:
        if not os.path.isdir(self.root):
            return
        for cid in self("list", "-q").stdout.split():
            self("delete", "--force", cid)


def new_id() -> str:
    return "t" + uuid.uuid4().hex[:12]


@functools.lru_cache(maxsize=None)
def unavailable(name: str) -> str | None:
    """Why a peer runtime can't run here (None when it can): probed once per session."""
    path = PEERS[name]
    if not os.access(path, os.X_OK):
        return f"{name} is not installed"
    if name == "dockyard-runc":
        return None
    from tests.fixtures import busybox
    with tempfile.TemporaryDirectory() as tmp:
        busybox.build_rootfs(os.path.join(tmp, "rootfs-src"))
        bundle = build(tmp, os.path.join(tmp, "rootfs-src"), ["true"])
        r = Runtime(name, path, os.path.join(tmp, "state")).run(bundle)
        if r.returncode != 0:
            return f"{name} cannot run containers on this host: {(r.stderr or r.stdout).strip().splitlines()[-1:]}"
    return None


def build(dest: str, rootfs: str, args: list[str], edit=None) -> str:
    """A bundle in dest/bundle-*: a copy of `rootfs`, and config.json from the default spec with
    a non-terminal process, a writable root and a cgroup under the test parent; `edit(config)`
    changes it."""
    bundle = os.path.join(dest, "bundle-" + uuid.uuid4().hex[:8])
    os.makedirs(bundle)
    if os.path.isdir(rootfs):
        shutil.copytree(rootfs, os.path.join(bundle, "rootfs"), symlinks=True)
    else:
        os.makedirs(os.path.join(bundle, "rootfs"))
    config = default_spec(args)
    config["ociVersion"] = "1.0.2"  # the newest every peer here accepts (crun 1.8.1)
    config["process"]["terminal"] = False
    config["root"]["readonly"] = False  # tests write their findings into the rootfs
    config["linux"]["cgroupsPath"] = f"/{CGROUP_PARENT}/{uuid.uuid4().hex[:12]}"
    if edit:
        edit(config)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    return bundle


@pytest.fixture(params=list(PEERS))
def runtime(request, tmp_path):
    reason = unavailable(request.param)
    if reason:
        pytest.skip(reason)
    rt = Runtime(request.param, PEERS[request.param], str(tmp_path / "state"))
    yield rt
    rt.cleanup()


@pytest.fixture
def ours(tmp_path):
    """dockyard-runc alone, for behaviour only ours promises (error wording, cleanup checks)."""
    rt = Runtime("dockyard-runc", OURS, str(tmp_path / "state"))
    yield rt
    rt.cleanup()


@pytest.fixture
def bundle(tmp_path, busybox_rootfs):
    """bundle(args, edit=None) → path of a fresh bundle running `args` in busybox."""
    def make(args, edit=None):
        return build(str(tmp_path), busybox_rootfs, args, edit)
    return make


@pytest.fixture(scope="session", autouse=True)
def _remove_test_cgroups():
    yield
    for hierarchy in cgroup_roots():
        path = os.path.join(hierarchy, CGROUP_PARENT)
        if os.path.isdir(path):
            for child in os.listdir(path):
                full = os.path.join(path, child)
                if os.path.isdir(full):
                    try:
                        os.rmdir(full)
                    except OSError:
                        pass
            try:
                os.rmdir(path)
            except OSError:
                pass


def cgroup_dirs(cgroups_path: str) -> list[str]:
    """Every host directory of a cgroupsPath that exists (all hierarchies)."""
    return [os.path.join(r, cgroups_path.lstrip("/")) for r in cgroup_roots()
            if os.path.isdir(os.path.join(r, cgroups_path.lstrip("/")))]
