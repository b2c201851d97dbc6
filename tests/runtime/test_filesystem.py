"""Mounts, the root filesystem, devices, masked and read-only paths."""

import os

import pytest


def test_tmpfs_mount_with_options(runtime, bundle):
    def edit(c):
        c["mounts"].append({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                            "options": ["nosuid", "nodev", "size=1m", "mode=700"]})
    out = runtime.output(bundle(["sh", "-c", "grep ' /scratch ' /proc/mounts; stat -c %a /scratch"], edit))
    line, mode = out.splitlines()
    assert line.split()[2] == "tmpfs"
    opts = line.split()[3].split(",")
    assert {"nosuid", "nodev", "size=1024k"} <= set(opts)
    assert mode == "700"


def test_bind_mount_read_only(runtime, bundle, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "hello").write_text("from host\n")

    def edit(c):
        c["mounts"].append({"destination": "/data", "type": "bind", "source": str(shared),
                            "options": ["rbind", "ro"]})
    out = runtime.output(bundle(["sh", "-c", "cat /data/hello; touch /data/x 2>/dev/null || echo ro"], edit))
    assert out == "from host\nro\n"
    assert not (shared / "x").exists()


def test_bind_mount_of_a_file(runtime, bundle, tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("single file\n")

    def edit(c):
        c["mounts"].append({"destination": "/etc/extra.txt", "type": "bind", "source": str(f),
                            "options": ["bind"]})
    assert runtime.output(bundle(["cat", "/etc/extra.txt"], edit)) == "single file\n"


def test_mount_destination_through_symlink_stays_in_root(runtime, bundle, tmp_path):
    """A symlink in the image pointing at a host path must resolve inside the rootfs."""
    victim = tmp_path / "victim"
    victim.mkdir()

    def edit(c):
        c["mounts"].append({"destination": "/escape/sub", "type": "tmpfs", "source": "tmpfs"})
    b = bundle(["sh", "-c", "grep -c ' /victim/sub ' /proc/mounts || true"], edit)
    os.symlink(str(victim), os.path.join(b, "rootfs/escape"))
    r = runtime.run(b)
    # runc and ours both resolve /escape inside the root; the host dir stays untouched.
    assert not (victim / "sub").exists()
    assert r.returncode == 0, r.stderr


def test_readonly_root(runtime, bundle):
    def edit(c):
        c["root"]["readonly"] = True
    out = runtime.output(bundle(["sh", "-c", "touch /x 2>/dev/null && echo rw || echo ro; touch /dev/shm/y && echo shm-rw"], edit))
    assert out == "ro\nshm-rw\n"


def test_masked_paths(runtime, bundle):
    def edit(c):
        c["linux"]["maskedPaths"] = ["/proc/timer_list", "/sys/firmware", "/does/not/exist"]
    out = runtime.output(bundle(["sh", "-c", "wc -c < /proc/timer_list; ls /sys/firmware | wc -l; mkdir /sys/firmware/x 2>/dev/null || echo masked-ro"], edit))
    assert out.split() == ["0", "0", "masked-ro"]


def test_readonly_paths(runtime, bundle):
    def edit(c):
        c["linux"]["readonlyPaths"] = ["/proc/sys", "/does/not/exist"]
    out = runtime.output(bundle(["sh", "-c", "echo 1 > /proc/sys/kernel/shmmni 2>/dev/null && echo rw || echo ro"], edit))
    assert out == "ro\n"


def test_default_devices(runtime, bundle):
    out = runtime.output(bundle(["sh", "-c", "for d in null zero full random urandom tty; do stat -c '%n %t:%T %a' /dev/$d; done"]))
    assert out.splitlines() == ["/dev/null 1:3 666", "/dev/zero 1:5 666", "/dev/full 1:7 666",
                                "/dev/random 1:8 666", "/dev/urandom 1:9 666", "/dev/tty 5:0 666"]


def test_dev_symlinks(runtime, bundle):
    out = runtime.output(bundle(["sh", "-c", "for l in fd stdin stdout stderr ptmx; do readlink /dev/$l; done"]))
    assert out.split() == ["/proc/self/fd", "/proc/self/fd/0", "/proc/self/fd/1", "/proc/self/fd/2", "pts/ptmx"]


def test_configured_device(runtime, bundle):
    def edit(c):
        c["linux"]["devices"] = [{"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3,
                                  "fileMode": 0o666, "uid": 1, "gid": 2}]
    out = runtime.output(bundle(["sh", "-c", "stat -c '%t:%T %a %u %g' /dev/mynull; echo x > /dev/mynull && echo writable"], edit))
    assert out.splitlines() == ["1:3 666 1 2", "writable"]


def test_device_cgroup_denies_unlisted_devices(runtime, bundle):
    """Default deny: a node for a device not allowed can be made but not opened."""
    out = runtime.output(bundle(["sh", "-c", "mknod /tmp/mem c 1 1 && (head -c1 /tmp/mem >/dev/null 2>&1 && echo open || echo denied)"],
                                lambda c: c["process"]["capabilities"]["bounding"].append("CAP_MKNOD")
                                or c["process"]["capabilities"]["effective"].append("CAP_MKNOD")
                                or c["process"]["capabilities"]["permitted"].append("CAP_MKNOD")))
    assert out == "denied\n"


def test_mqueue_and_devpts_and_shm(runtime, bundle):
    out = runtime.output(bundle(["sh", "-c", "awk '{print $2, $3}' /proc/mounts | grep -E '^/dev/(mqueue|pts|shm) '"]))
    assert sorted(out.splitlines()) == ["/dev/mqueue mqueue", "/dev/pts devpts", "/dev/shm tmpfs"]


def test_cgroup_mount_is_the_containers_own(runtime, bundle):
    out = runtime.output(bundle(["sh", "-c", "cat /proc/self/cgroup | grep memory; ls /sys/fs/cgroup/memory/memory.limit_in_bytes"]))
    line, path = out.splitlines()
    assert line.endswith(":/")  # a private cgroup namespace: we are at its root
    assert path == "/sys/fs/cgroup/memory/memory.limit_in_bytes"


@pytest.mark.parametrize("propagation", ["slave", "private"])
def test_rootfs_propagation_does_not_leak_mounts_to_host(runtime, bundle, propagation):
    def edit(c):
        c["linux"]["rootfsPropagation"] = propagation
        c["mounts"].append({"destination": "/inner", "type": "tmpfs", "source": "tmpfs"})
    b = bundle(["true"], edit)
    before = open("/proc/self/mountinfo").read().count(b)
    runtime.output(b)
    assert open("/proc/self/mountinfo").read().count(b) == before == 0


def test_no_pivot(runtime, bundle):
    cid = "np" + os.urandom(4).hex()
    r = runtime("run", "--no-pivot", "--bundle", bundle(["sh", "-c", "cat /etc/hostname >/dev/null; echo ok"]), cid)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "ok\n"


def test_cgroup_mount_without_cgroup_namespace(runtime, bundle):
    """Docker's v1 default: the host cgroup namespace, the container's own cgroups bind-mounted."""
    def edit(c):
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "cgroup"]
        c["linux"]["resources"]["memory"] = {"limit": 64 << 20}
    out = runtime.output(bundle(["sh", "-c", "grep memory /proc/self/cgroup; cat /sys/fs/cgroup/memory/memory.limit_in_bytes"], edit))
    line, limit = out.splitlines()
    assert line.split(":", 2)[2].startswith("/dockyard-test/")
    assert int(limit) == 64 << 20
