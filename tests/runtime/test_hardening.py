"""The hardening runc has learnt the hard way, one test per point: no host fd reaches the
container, the cwd can't escape through one, the init is non-dumpable until exec, and the
runtime's own binary can't be executed (and so rewritten) from inside."""

import os
import subprocess

from conftest import new_id


def run_with_open_fd(runtime, b, fd=7):
    """Run with an extra inheritable fd open in the runtime's caller (not --preserve-fds)."""
    return subprocess.run(["sh", "-c", f'exec {fd}</etc/hostname; exec "$@"', "sh", runtime.path,
                           "--root", runtime.root, "run", "--bundle", b, new_id()],
                          capture_output=True, text=True, timeout=60)


def test_no_host_fd_reaches_the_container(runtime, bundle):
    r = run_with_open_fd(runtime, bundle(["ls", "/proc/self/fd"]))
    assert r.returncode == 0, r.stderr
    # 0-2 are stdio, 3 is ls's own handle on the directory it lists.
    assert r.stdout.split() == ["0", "1", "2", "3"]


def test_cve_2024_21626_cwd_through_a_leaked_fd_is_refused(runtime, bundle):
    for fd in range(3, 10):
        def edit(c, fd=fd):
            c["process"]["cwd"] = f"/proc/self/fd/{fd}"
        r = run_with_open_fd(runtime, bundle(["sh", "-c", "pwd; ls"], edit))
        assert r.returncode != 0, f"cwd /proc/self/fd/{fd} was accepted: {r.stdout!r}"


def test_init_is_not_dumpable_before_exec(ours, bundle):
    """While the init waits for `start`, it runs the runtime's code on the host interpreter;
    nothing in the container may open its /proc entries (exe, mem, environ) to reach it.
    (runc's waiting init is a sealed memfd copy of runc, so runc doesn't need this.)"""
    cid = new_id()
    ours.ok("create", "--bundle", bundle(["sleep", "60"]), cid)
    for path in ("/proc/1/exe", "/proc/1/environ"):
        r = ours("exec", cid, "cat", path)
        assert r.returncode != 0, f"{path} readable from inside: {r.stdout[:80]!r}"


def test_cve_2019_5736_proc_self_exe_is_refused(ours, bundle):
    r = ours.run(bundle(["/proc/self/exe", "-c", "print('host interpreter')"]))
    assert r.returncode != 0
    assert "host interpreter" not in r.stdout
    assert "CVE-2019-5736" in r.stderr


def test_cve_2019_5736_shebang_to_proc_self_exe_is_refused(ours, bundle):
    b = bundle(["/evil"])
    with open(os.path.join(b, "rootfs/evil"), "w") as f:
        f.write("#!/proc/self/exe\nprint('host interpreter')\n")
    os.chmod(os.path.join(b, "rootfs/evil"), 0o755)
    r = ours.run(b)
    assert r.returncode != 0
    assert "host interpreter" not in r.stdout


def test_cve_2019_5736_exec_of_proc_self_exe_is_refused(ours, bundle):
    cid = new_id()
    ours.ok("run", "-d", "--bundle", bundle(["sleep", "60"]), cid)
    r = ours("exec", cid, "/proc/self/exe", "-c", "print('host interpreter')")
    assert r.returncode != 0
    assert "host interpreter" not in r.stdout


def test_container_cannot_see_runtime_state(runtime, bundle):
    """exec.fifo is handed over as an O_PATH fd; the state dir is not in the container."""
    cid = new_id()
    runtime.ok("create", "--bundle", bundle(["true"]), cid)
    r = runtime("exec", cid, "sh", "-c", f"ls -d {runtime.root} 2>/dev/null")
    assert r.stdout == ""


def test_no_host_fd_reaches_an_exec(runtime, bundle):
    cid = new_id()
    runtime.ok("run", "-d", "--bundle", bundle(["sleep", "60"]), cid)
    r = subprocess.run(["sh", "-c", 'exec 7</etc/hostname; exec "$@"', "sh", runtime.path,
                        "--root", runtime.root, "exec", cid, "ls", "/proc/self/fd"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "1", "2", "3"]
