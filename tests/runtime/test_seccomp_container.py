"""linux.seccomp applied to the container process, with and without noNewPrivileges, and
Docker's default profile (converted for the default capabilities) through the runtime."""

import json
import os

import pytest

from conftest import new_id
from dockyard.oci.defaults import DOCKER_DEFAULT_CAPABILITIES
from dockyard.runtime.seccomp import docker_profile_to_oci

PROFILE = os.path.join(os.path.dirname(__import__("dockyard.oci").oci.__file__), "schemas", "seccomp-default.json")


def deny_mkdir(c, nnp=True):
    c["process"]["noNewPrivileges"] = nnp
    c["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}],
    }


@pytest.mark.parametrize("nnp", [True, False])
def test_errno_action(runtime, bundle, nnp):
    out = runtime.output(bundle(["sh", "-c", "mkdir /tmp/x 2>&1; echo done"], lambda c: deny_mkdir(c, nnp)))
    assert "Permission denied" in out
    assert out.endswith("done\n")


def test_argument_condition(runtime, bundle):
    def edit(c):
        c["linux"]["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                          "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}],
        }
    # personality(PER_LINUX32) is refused, personality(PER_LINUX) still works.
    out = runtime.output(bundle(["sh", "-c", "linux32 uname -m 2>&1; linux64 uname -m"], edit))
    lines = out.splitlines()
    assert "not permitted" in lines[0].lower()
    assert lines[-1] == "x86_64"


def test_kill_action(runtime, bundle):
    def edit(c):
        c["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                 "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_KILL_PROCESS"}]}
    r = runtime.run(bundle(["pwd"], edit))
    assert r.returncode == 128 + 31  # SIGSYS


def test_docker_default_profile(runtime, bundle):
    with open(PROFILE) as f:
        profile = json.load(f)
    seccomp = docker_profile_to_oci(profile, DOCKER_DEFAULT_CAPABILITIES)

    def edit(c):
        caps = list(DOCKER_DEFAULT_CAPABILITIES)
        c["process"]["capabilities"] = {k: caps for k in ("bounding", "effective", "permitted")}
        c["linux"]["seccomp"] = seccomp
    out = runtime.output(bundle(["sh", "-c", "unshare -U true 2>&1 || echo refused; echo $$"], edit))
    assert out.splitlines()[-2:] == ["refused", "1"]


def test_exec_gets_the_containers_filter(runtime, bundle):
    cid = new_id()
    runtime.ok("run", "-d", "--bundle", bundle(["sleep", "60"], deny_mkdir), cid)
    r = runtime("exec", cid, "mkdir", "/tmp/y")
    assert r.returncode != 0
    assert "Permission denied" in r.stderr


def test_notify_listener_gets_the_fd_and_state(runtime, bundle, tmp_path):
    """SCMP_ACT_NOTIFY: the runtime hands the listener fd and the container process state to
    the agent at listenerPath (config-linux.md §The Container Process State)."""
    import socket
    import threading

    path = str(tmp_path / "agent.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    got = {}

    def agent():
        conn, _ = server.accept()
        msg, fds, _, _ = socket.recv_fds(conn, 65536, 4)
        got["state"] = json.loads(msg)
        got["fds"] = fds
        conn.close()
    t = threading.Thread(target=agent)
    t.start()

    def edit(c):
        c["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": path,
                                 "listenerMetadata": "meta",
                                 "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}
    cid = new_id()
    runtime.ok("create", "--bundle", bundle(["true"], edit), cid)
    t.join(10)
    server.close()
    for fd in got.get("fds", []):
        os.close(fd)
    assert len(got["fds"]) == 1
    state = got["state"]
    assert state["fds"] == ["seccompFd"]
    assert state["metadata"] == "meta"
    assert state["state"]["id"] == cid
    assert state["pid"] == runtime.state(cid)["pid"]
