"""Load compiled filters into forked children and watch the kernel enforce them.

Each child sets NO_NEW_PRIVS (so no privilege is needed), installs a filter, runs a probe and
reports the probe's JSON result through a pipe; the exit status tells how it ended.
"""

import ctypes
import errno
import json
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dockyard.linux import prctl
from dockyard.linux import seccomp as kernel
from dockyard.linux.libc import libc
from dockyard.runtime import seccomp

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64",
                                reason="probes use x86_64 syscall numbers")

SYS_getpid = 39
SYS_getppid = 110
SYS_keyctl = 250
SYS_clone3 = 435
CLONE_NEWUSER = 0x10000000
KEYCTL_JOIN_SESSION_KEYRING = 1
PERSONALITY_QUERY = 0xFFFFFFFF

PROFILE = Path(seccomp.__file__).parents[1] / "oci" / "schemas" / "seccomp-default.json"
DOCKER_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
               "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
               "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]


def allow_all_but(*syscalls, **spec):
    return {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": list(syscalls), **spec}


def raw(nr, *args) -> int:
    """Call a syscall; 0 on success, else its errno."""
    rc = libc.syscall(ctypes.c_long(nr), *[ctypes.c_ulong(a) for a in args])
    return ctypes.get_errno() if rc == -1 else 0


def errno_of(fn, *args) -> int:
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return 0


def run_child(compiled, probe=lambda: None):
    """Fork; the child installs `compiled` and runs `probe`. Returns (exit code or -signal,
    the probe's result or None)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.close(read_end)
            signal.alarm(10)  # a stuck child dies rather than hanging the suite
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGSYS would dump core
            prctl.set_no_new_privs()
            if compiled is not None:
                kernel.install(compiled)
            os.write(write_end, json.dumps(probe()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        output = pipe.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), json.loads(output) if output else None


def load(spec, probe):
    return run_child(seccomp.compile(spec), probe)


def test_errno_with_custom_errno_ret(tmp_path):
    spec = allow_all_but({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13})
    assert load(spec, lambda: errno_of(os.mkdir, tmp_path / "d")) == (0, errno.EACCES)
    assert not (tmp_path / "d").exists()


def test_errno_default_is_eperm(tmp_path):
    spec = allow_all_but({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"})
    assert load(spec, lambda: errno_of(os.mkdir, tmp_path / "d")) == (0, errno.EPERM)


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD",
                                    "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP"])
def test_kill_and_trap_end_in_sigsys(action):
    spec = allow_all_but({"names": ["getppid"], "action": action})
    assert load(spec, lambda: raw(SYS_getppid)) == (-signal.SIGSYS, None)


@pytest.mark.parametrize("action", ["SCMP_ACT_LOG", "SCMP_ACT_ALLOW"])
def test_log_and_allow_let_the_call_through(action):
    spec = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
            "syscalls": [{"names": ["getppid"], "action": action},
                         {"names": ["write", "exit_group", "close", "munmap", "rt_sigaction",
                                    "rt_sigprocmask", "getpid"], "action": "SCMP_ACT_ALLOW"}]}
    assert load(spec, os.getppid) == (0, os.getpid())


def test_default_action_applies_to_unlisted_calls(tmp_path):
    spec = allow_all_but({"names": ["getppid"], "action": "SCMP_ACT_ALLOW"},
                         defaultAction="SCMP_ACT_ALLOW")
    spec["syscalls"] = [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 28}]
    assert load(spec, lambda: [errno_of(os.mkdir, tmp_path / "d"), os.getppid()]) == \
        (0, [errno.ENOSPC, os.getpid()])


def test_argument_equal():
    spec = allow_all_but({"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                          "args": [{"index": 0, "value": PERSONALITY_QUERY,
                                    "op": "SCMP_CMP_EQ"}]})

    def probe():
        query = libc.personality(ctypes.c_ulong(PERSONALITY_QUERY))
        query_errno = ctypes.get_errno()
        return [query, query_errno, libc.personality(ctypes.c_ulong(0))]
    exit_code, (query, query_errno, linux) = load(spec, probe)
    assert (exit_code, query, query_errno) == (0, -1, errno.EPERM)
    assert linux != -1


def test_socket_denied_only_for_af_inet():
    spec = allow_all_but({"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
                          "args": [{"index": 0, "value": socket.AF_INET, "op": "SCMP_CMP_EQ"}]})

    def probe():
        return [errno_of(lambda: socket.socket(socket.AF_INET).close()),
                errno_of(lambda: socket.socket(socket.AF_UNIX).close())]
    assert load(spec, probe) == (0, [errno.EAFNOSUPPORT, 0])


def test_conditions_on_one_argument_are_ored_like_runc():
    spec = allow_all_but({"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
                          "args": [{"index": 0, "value": socket.AF_INET, "op": "SCMP_CMP_EQ"},
                                   {"index": 0, "value": socket.AF_INET6, "op": "SCMP_CMP_EQ"}]})

    def probe():
        return [errno_of(lambda: socket.socket(family).close())
                for family in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)]
    assert load(spec, probe) == (0, [errno.EAFNOSUPPORT, errno.EAFNOSUPPORT, 0])


def test_conditions_on_different_arguments_are_anded():
    spec = allow_all_but({"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
                          "args": [{"index": 0, "value": socket.AF_INET, "op": "SCMP_CMP_EQ"},
                                   # Python ors SOCK_CLOEXEC into the type; mask it off.
                                   {"index": 1, "value": 0xF, "valueTwo": socket.SOCK_DGRAM,
                                    "op": "SCMP_CMP_MASKED_EQ"}]})

    def probe():
        return [errno_of(lambda: socket.socket(socket.AF_INET, kind).close())
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM)]
    assert load(spec, probe) == (0, [errno.EAFNOSUPPORT, 0])


def test_masked_eq_denies_world_writable_mkdir(tmp_path):
    # (mode & 0o002) == 0o002: OCI puts the mask in value and the datum in valueTwo.
    spec = allow_all_but({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                          "args": [{"index": 1, "value": 0o002, "valueTwo": 0o002,
                                    "op": "SCMP_CMP_MASKED_EQ"}]})

    def probe():
        return [errno_of(os.mkdir, tmp_path / "open", 0o777),
                errno_of(os.mkdir, tmp_path / "closed", 0o755)]
    assert load(spec, probe) == (0, [errno.EACCES, 0])
    assert (tmp_path / "closed").is_dir() and not (tmp_path / "open").exists()


def libc_errno(rc: int) -> int:
    return ctypes.get_errno() if rc == -1 else 0


def default_profile_probe():
    # unshare last: once in a new user namespace, mount would fail for other reasons.
    return {"getpid": raw(SYS_getpid),
            "mount": libc_errno(libc.mount(b"none", b"/nonexistent", b"tmpfs", 0, None)),
            "keyctl": raw(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, 0),
            "clone3": raw(SYS_clone3, 0, 0),
            "unshare": libc_errno(libc.unshare(CLONE_NEWUSER))}


def test_default_profile_without_sys_admin():
    oci = seccomp.docker_profile_to_oci(json.loads(PROFILE.read_text()), DOCKER_CAPS)
    code, result = load(oci, default_profile_probe)
    assert code == 0
    assert result == {"getpid": 0, "unshare": errno.EPERM, "mount": errno.EPERM,
                      "keyctl": errno.EPERM, "clone3": errno.ENOSYS}


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs CAP_SYS_ADMIN")
def test_default_profile_with_sys_admin_defers_to_the_kernel():
    oci = seccomp.docker_profile_to_oci(json.loads(PROFILE.read_text()),
                                        DOCKER_CAPS + ["CAP_SYS_ADMIN"])
    filtered = load(oci, default_profile_probe)
    unfiltered = run_child(None, default_profile_probe)
    assert filtered[1]["unshare"] == unfiltered[1]["unshare"]
    assert filtered[1]["mount"] == unfiltered[1]["mount"] == errno.ENOENT
    assert filtered[1]["keyctl"] == errno.EPERM  # not allowed by any capability


@pytest.mark.parametrize("flag", ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                                  "SECCOMP_FILTER_FLAG_TSYNC"])
def test_filter_flags_are_accepted_by_the_kernel(flag, tmp_path):
    spec = allow_all_but({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                         flags=[flag])
    assert load(spec, lambda: errno_of(os.mkdir, tmp_path / "d")) == (0, errno.EACCES)


def test_cached_program_is_identical_and_loads(tmp_path):
    spec = allow_all_but({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13})
    fresh = seccomp.compile(spec, cache_dir=tmp_path / "cache")
    cached = seccomp.compile(spec, cache_dir=tmp_path / "cache")
    assert cached.program == fresh.program
    assert run_child(cached, lambda: errno_of(os.mkdir, tmp_path / "d")) == (0, errno.EACCES)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs CAP_SYS_ADMIN")
def test_install_without_no_new_privs_as_root(tmp_path):
    compiled = seccomp.compile(
        allow_all_but({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}))
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            kernel.install(compiled)
            code = errno_of(os.mkdir, tmp_path / "d")
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == errno.EACCES


def test_notify_hands_listener_to_agent(tmp_path):
    agent_path = str(tmp_path / "agent.sock")
    spec = allow_all_but({"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"},
                         listenerPath=agent_path, listenerMetadata="hello")
    compiled = seccomp.compile(spec)
    agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    agent.bind(agent_path)
    agent.listen(1)
    agent.settimeout(10)
    go_read, go_write = os.pipe()

    def probe():
        fd = kernel.install(compiled)
        state = {"ociVersion": "1.2.0", "id": "c1", "status": "creating", "pid": os.getpid(),
                 "bundle": "/b"}
        seccomp.send_listener(agent_path, fd, state, metadata=spec["listenerMetadata"])
        os.close(fd)
        os.read(go_read, 1)  # wait until the agent dropped its copy too
        return [fd, raw(SYS_getppid)]

    try:
        pid = os.fork()
        if pid == 0:
            code = 99
            try:
                signal.alarm(10)
                prctl.set_no_new_privs()
                code = 0 if probe()[1] == errno.ENOSYS else 1
            finally:
                os._exit(code)
        conn, _ = agent.accept()
        with conn:
            message, fds, _, _ = socket.recv_fds(conn, 65536, 1)
        assert len(fds) == 1
        assert os.readlink(f"/proc/self/fd/{fds[0]}") == "anon_inode:seccomp notify"
        os.close(fds[0])
        os.write(go_write, b"x")
        _, status = os.waitpid(pid, 0)
    finally:
        agent.close()
        os.close(go_read)
        os.close(go_write)
    state = json.loads(message)
    assert state["fds"] == ["seccompFd"] and state["metadata"] == "hello"
    assert state["pid"] == pid and state["state"]["id"] == "c1"
    assert state["ociVersion"] == "1.2.0"
    # With every listener closed, the notified call fails with ENOSYS instead of blocking.
    assert os.waitstatus_to_exitcode(status) == 0


# Run in a fresh interpreter: set NO_NEW_PRIVS, install a filter that denies mkdir with EACCES
# while watching every import, then report the imports seen and mkdir's errno.
NO_IMPORT_PROBE = """
import builtins, ctypes, os, sys
from dockyard.linux import seccomp as kernel
from dockyard.linux.libc import libc
compiled = kernel.CompiledFilter(program=bytes.fromhex(sys.argv[1]), flags=int(sys.argv[2]), notify=False)
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
before, seen, real = set(sys.modules), [], builtins.__import__
builtins.__import__ = lambda name, *args, **kwargs: seen.append(name) or real(name, *args, **kwargs)
kernel.install(compiled)
builtins.__import__ = real
try:
    os.mkdir(sys.argv[3])
    result = 0
except OSError as e:
    result = e.errno
print(seen, sorted(set(sys.modules) - before), result)
"""


def test_install_imports_nothing(tmp_path):
    """install() runs in the container's init after pivot_root, where the host's modules are out
    of reach: it must not import anything, not even a module that is already loaded."""
    compiled = seccomp.compile(allow_all_but({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                                              "errnoRet": 13}))
    out = subprocess.run([sys.executable, "-c", NO_IMPORT_PROBE, compiled.program.hex(),
                          str(compiled.flags), str(tmp_path / "d")],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    assert out.split() == ["[]", "[]", str(errno.EACCES)]
