"""config.json's process object and the per-container kernel settings, checked from inside."""

import json
import os

import pytest


def caps_of(output: str) -> dict:
    return {line.split(":")[0]: int(line.split()[1], 16) for line in output.splitlines()}


def test_env_and_cwd(runtime, bundle):
    def edit(c):
        c["process"]["env"] = ["PATH=/bin", "GREETING=hi there"]
        c["process"]["cwd"] = "/tmp"
    assert runtime.output(bundle(["sh", "-c", "echo $GREETING; pwd"], edit)) == "hi there\n/tmp\n"


def test_cwd_is_created_when_missing(runtime, bundle):
    def edit(c):
        c["process"]["cwd"] = "/does/not/exist"
    r = runtime.run(bundle(["pwd"], edit))
    # runc fails on a missing cwd too; both must say so rather than run elsewhere.
    assert r.returncode != 0 or r.stdout == "/does/not/exist\n"


def test_user_uid_gid_groups(runtime, bundle):
    def edit(c):
        c["process"]["user"] = {"uid": 1000, "gid": 1001, "additionalGids": [1005, 1006]}
    assert runtime.output(bundle(["id"], edit)).split() == ["uid=1000", "gid=1001", "groups=1005,1006"]


def test_umask(runtime, bundle):
    def edit(c):
        c["process"]["user"]["umask"] = 0o077
    assert runtime.output(bundle(["sh", "-c", "umask"], edit)).strip() == "0077"


def test_rlimits(runtime, bundle):
    def edit(c):
        c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 512, "soft": 256},
                                   {"type": "RLIMIT_CORE", "hard": 0, "soft": 0}]
    out = runtime.output(bundle(["sh", "-c", "ulimit -n; ulimit -Hn; ulimit -c"], edit))
    assert out.split() == ["256", "512", "0"]


@pytest.mark.parametrize("nnp", [True, False])
def test_no_new_privileges(runtime, bundle, nnp):
    def edit(c):
        c["process"]["noNewPrivileges"] = nnp
    out = runtime.output(bundle(["grep", "NoNewPrivs", "/proc/self/status"], edit))
    assert out.split() == ["NoNewPrivs:", "1" if nnp else "0"]


def test_five_capability_sets(runtime, bundle):
    def edit(c):
        c["process"]["user"] = {"uid": 1000, "gid": 1000}
        c["process"]["capabilities"] = {
            "bounding": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_KILL"],
            "permitted": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
            "inheritable": ["CAP_NET_BIND_SERVICE"],
            "effective": ["CAP_CHOWN"],
            "ambient": ["CAP_NET_BIND_SERVICE"],
        }
    caps = caps_of(runtime.output(bundle(["grep", "^Cap", "/proc/self/status"], edit)))
    chown, kill, bind = 1 << 0, 1 << 5, 1 << 10
    assert caps["CapBnd"] == chown | bind | kill
    assert caps["CapAmb"] == bind
    assert caps["CapInh"] == bind
    # After execve as non-root, ambient caps become permitted and effective.
    assert caps["CapPrm"] == bind
    assert caps["CapEff"] == bind


def test_no_capabilities_object_means_none(runtime, bundle):
    def edit(c):
        del c["process"]["capabilities"]
    caps = caps_of(runtime.output(bundle(["grep", "^Cap", "/proc/self/status"], edit)))
    assert caps["CapEff"] == caps["CapPrm"] == caps["CapBnd"] == 0


def test_oom_score_adj(runtime, bundle):
    def edit(c):
        c["process"]["oomScoreAdj"] = 500
    assert runtime.output(bundle(["cat", "/proc/self/oom_score_adj"], edit)) == "500\n"


def test_hostname(runtime, bundle):
    def edit(c):
        c["hostname"] = "box1"
    assert runtime.output(bundle(["hostname"], edit)) == "box1\n"


def skip_runc_before_1_2(runtime, feature):
    if runtime.name == "runc":
        pytest.skip(f"Debian's runc 1.1.5 predates {feature} (runtime-spec 1.2)")


def test_domainname(runtime, bundle):
    skip_runc_before_1_2(runtime, "domainname")

    def edit(c):
        c["domainname"] = "example.test"
    assert runtime.output(bundle(["cat", "/proc/sys/kernel/domainname"], edit)) == "example.test\n"


def test_sysctl(runtime, bundle):
    def edit(c):
        c["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmni": "1024"}
    out = runtime.output(bundle(["sh", "-c", "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni"], edit))
    assert out.split() == ["1", "1024"]


def test_sysctl_outside_a_namespace_is_refused(runtime, bundle):
    def edit(c):
        c["linux"]["sysctl"] = {"kernel.panic": "3"}
    assert runtime.run(bundle(["true"], edit)).returncode != 0


def test_personality_linux32(runtime, bundle):
    skip_runc_before_1_2(runtime, "linux.personality")

    def edit(c):
        c["linux"]["personality"] = {"domain": "LINUX32"}
    assert runtime.output(bundle(["uname", "-m"], edit)).strip() in ("i686", "i386")


def test_preserve_fds(runtime, bundle, tmp_path):
    import subprocess
    data = tmp_path / "passed"
    data.write_text("through fd 3\n")
    b = bundle(["cat", "/proc/self/fd/3"])
    # The shell opens fd 3 for the runtime, so nothing of ours is disturbed.
    r = subprocess.run(["sh", "-c", 'exec 3<"$0"; exec "$@"', str(data), runtime.path,
                        "--root", runtime.root, "run", "--preserve-fds", "1", "--bundle", b,
                        "pf" + os.urandom(4).hex()], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "through fd 3\n"


def test_terminal_through_console_socket(runtime, bundle, tmp_path):
    """The pty master arrives over --console-socket; the container sees a tty of its own size."""
    import socket
    import threading
    from dockyard.runtime.terminal import recv_master

    def edit(c):
        c["process"]["terminal"] = True
        c["process"]["consoleSize"] = {"height": 33, "width": 101}
    b = bundle(["sh", "-c", "tty; stty size; ls -l /dev/console | cut -c1"], edit)
    path = str(tmp_path / "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    got = {}

    def accept():
        conn, _ = server.accept()
        got["master"] = recv_master(conn)
        conn.close()
    t = threading.Thread(target=accept)
    t.start()
    cid = "tty" + os.urandom(4).hex()
    runtime.ok("create", "--console-socket", path, "--bundle", b, cid)
    t.join(10)
    server.close()
    runtime.ok("start", cid)
    out = b""
    while True:
        try:
            chunk = os.read(got["master"], 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(got["master"])
    lines = out.decode().split()
    assert lines[0].startswith("/dev/pts/")
    assert lines[1:3] == ["33", "101"]
    assert lines[3] == "c"


def test_annotations_in_state(runtime, bundle):
    def edit(c):
        c["annotations"] = {"org.example.key": "value"}
    cid = "ann" + os.urandom(4).hex()
    runtime.ok("create", "--bundle", bundle(["true"], edit), cid)
    assert json.loads(runtime.ok("state", cid))["annotations"] == {"org.example.key": "value"}


def test_signals_are_not_ignored_or_blocked(runtime, bundle):
    """Python ignores SIGPIPE and SIGXFSZ for itself; the container's process must not inherit
    that. (Signals the C library reserves, 32 and 33, may be ignored by whoever started us.)"""
    out = runtime.output(bundle(["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"]))
    masks = {line.split()[0]: int(line.split()[1], 16) for line in out.splitlines()}
    assert masks["SigBlk:"] == 0
    assert masks["SigIgn:"] & ~(0b11 << 31) == 0


@pytest.mark.parametrize("new_keyring", [True, False])
def test_session_keyring(runtime, bundle, new_keyring):
    """A session keyring of the container's own, named after it, unless --no-new-keyring."""
    def edit(c):
        c["linux"]["maskedPaths"] = [p for p in c["linux"]["maskedPaths"] if p != "/proc/keys"]
    cid = "kr" + os.urandom(4).hex()
    flags = [] if new_keyring else ["--no-new-keyring"]
    r = runtime("run", *flags, "--bundle", bundle(["cat", "/proc/keys"], edit), cid)
    assert r.returncode == 0, r.stderr
    assert (f"_ses.{cid}" in r.stdout) == new_keyring
