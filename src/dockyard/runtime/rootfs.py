"""The container's filesystem view, built inside its new mount namespace: propagation, the
rootfs bind, config.json's mounts (targets pinned by fd, never by host path strings), devices,
pivot_root, then the read-only root, readonly and masked paths (runc's prepareRootfs and
finalizeRootfs order)."""

import os
import stat

from dockyard.errors import InvalidArgument, SystemFailure
from dockyard.linux import mount as mnt
from dockyard.linux.fs import fd_path, make_in_root, open_in_root

from . import devices

PROC_SUPER_MAGIC = 0x9FA0


def prepare(config: dict, rootfs: str, *, cgroup=None, new_cgroupns: bool, in_userns: bool,
            terminal: bool, no_pivot: bool, before_pivot) -> None:
    """Everything up to and including the switch to the new root. `before_pivot` runs after
    the mounts are in place (the parent's prestart/createRuntime hooks, then createContainer)."""
    linux = config.get("linux", {})
    propagation = mnt.PROPAGATION_OPTIONS.get(linux.get("rootfsPropagation") or "rslave",
                                              mnt.MS_SLAVE | mnt.MS_REC)
    # Nothing we mount below may leak back to the host: make our copy of the tree a slave
    # (or what rootfsPropagation asks for), then make the rootfs a mount point of its own.
    mnt.mount(None, "/", None, propagation)
    mnt.mount(rootfs, rootfs, None, mnt.MS_BIND | mnt.MS_REC)
    _make_parent_private(rootfs)

    root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        has_dev_mount = False
        for m in config.get("mounts", []):
            if os.path.normpath(m["destination"]) == "/dev":
                has_dev_mount = True
            mount_entry(root_fd, m, cgroup=cgroup, new_cgroupns=new_cgroupns, in_userns=in_userns)
        if has_dev_mount:
            devices.create_devices(root_fd, linux.get("devices", []), bind_from_host=in_userns)
            devices.create_symlinks(root_fd)
        else:
            for dev in linux.get("devices", []):
                devices.create_device(root_fd, dev, in_userns)
        if terminal:
            # The pty slave is bind-mounted here after the switch; it needs a file to land on.
            os.close(make_in_root(root_fd, "/dev/console", directory=False))
        before_pivot()
        if no_pivot:
            _move_root(rootfs)
        else:
            _pivot(root_fd)
    finally:
        os.close(root_fd)


def _make_parent_private(rootfs: str) -> None:
    """pivot_root refuses a new root whose parent mount is shared."""
    path = os.path.dirname(rootfs)
    mounts = _mount_points()
    while path not in mounts and path != "/":
        path = os.path.dirname(path)
    try:
        mnt.mount(None, path, None, mnt.MS_PRIVATE)
    except OSError:
        pass


def _mount_points() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f}


def _pivot(root_fd: int) -> None:
    # pivot_root(".", ".") stacks the old root on top of the new one; detach it right away.
    old_fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fchdir(root_fd)
        mnt.pivot_root(".", ".")
        os.fchdir(old_fd)
        mnt.mount(None, ".", None, mnt.MS_SLAVE | mnt.MS_REC)
        mnt.umount(".", mnt.MNT_DETACH)
    finally:
        os.close(old_fd)
    os.chdir("/")


def _move_root(rootfs: str) -> None:
    """--no-pivot (ramfs hosts): move the rootfs mount over / and chroot into it."""
    os.chdir(rootfs)
    mnt.mount(rootfs, "/", None, mnt.MS_MOVE)
    mnt.chroot(".")
    os.chdir("/")


def mount_entry(root_fd: int, m: dict, *, cgroup, new_cgroupns: bool, in_userns: bool) -> None:
    dest = m["destination"]
    if not dest.startswith("/"):
        dest = "/" + dest  # runc accepts relative destinations as relative to the root
    kind = m.get("type") or ""
    options = m.get("options") or []
    flags, propagation, data = mnt.parse_options(options)
    source = m.get("source") or kind or "none"
    bind = bool(flags & mnt.MS_BIND)
    if kind == "cgroup":
        return _mount_cgroup(root_fd, dest, flags, cgroup, new_cgroupns)
    if bind:
        src_is_dir = os.path.isdir(source)
        if not os.path.exists(source):
            raise InvalidArgument(f"mount {dest}: bind source {source} does not exist")
    else:
        src_is_dir = True
    target = make_in_root(root_fd, dest, directory=src_is_dir)
    try:
        if kind == "proc":
            _check_proc_target(target, dest)
        if not bind and "tmpcopyup" in options and kind == "tmpfs":
            _tmpfs_copyup(target, flags, data)
        elif bind:
            mnt.mount(source, fd_path(target), None, flags & (mnt.MS_BIND | mnt.MS_REC))
        else:
            mnt.mount(source, fd_path(target), kind, flags, data)
        with _on_top(root_fd, dest) as top:
            # A bind mount ignores the other flags; apply them with a remount, keeping the
            # flags the kernel locks on the source (nosuid/nodev/noexec in a user namespace).
            if bind and flags & ~(mnt.MS_BIND | mnt.MS_REC):
                _remount(top, flags)
            for p in propagation:
                mnt.mount(None, fd_path(top), None, p)
            mnt.apply_recursive_attrs(top, options)
    except OSError as e:
        raise SystemFailure(f"mount {source} to {dest} ({kind or 'bind'}): {e.strerror}") from None
    finally:
        os.close(target)


class _on_top:
    """An fd on what is now mounted at `dest`. The fd a mount was made through (via its
    /proc/self/fd magic link) still names the covered directory, and a remount through it
    would change the parent mount; so resolve the path again, which crosses into the new mount."""

    def __init__(self, root_fd: int, dest: str):
        self.fd = open_in_root(root_fd, dest)

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *exc) -> None:
        os.close(self.fd)


def _remount(target_fd: int, flags: int) -> None:
    locked = _locked_flags(target_fd)
    mnt.mount(None, fd_path(target_fd), None,
              (flags & ~mnt.MS_REC) | mnt.MS_REMOUNT | mnt.MS_BIND | locked)


def _locked_flags(fd: int) -> int:
    st = os.statvfs(fd_path(fd))
    locked = 0
    for st_flag, ms in ((os.ST_NOSUID, mnt.MS_NOSUID), (os.ST_NODEV, mnt.MS_NODEV),
                        (os.ST_NOEXEC, mnt.MS_NOEXEC), (os.ST_RDONLY, mnt.MS_RDONLY)):
        if st.f_flag & st_flag:
            locked |= ms
    return locked & ~mnt.MS_RDONLY


def _check_proc_target(fd: int, dest: str) -> None:
    """CVE-2019-19921: procfs only onto a real directory (a symlink would redirect it)."""
    if not stat.S_ISDIR(os.fstat(fd).st_mode):
        raise SystemFailure(f"mount destination {dest} for proc is not a directory")


def _tmpfs_copyup(target: int, flags: int, data: str) -> None:
    """tmpcopyup: the new tmpfs starts with what the image had at that path."""
    import shutil
    import tempfile
    staging = tempfile.mkdtemp(prefix=".dockyard-copyup-", dir="/tmp")
    try:
        mnt.mount("tmpfs", staging, "tmpfs", flags, data)
        src = fd_path(target)
        for name in os.listdir(src):
            s = os.path.join(src, name)
            d = os.path.join(staging, name)
            if os.path.isdir(s) and not os.path.islink(s):
                shutil.copytree(s, d, symlinks=True)
            else:
                shutil.copy2(s, d, follow_symlinks=False)
        mnt.mount(staging, fd_path(target), None, mnt.MS_MOVE)
    finally:
        os.rmdir(staging)


def _mount_cgroup(root_fd: int, dest: str, flags: int, cgroup, new_cgroupns: bool) -> None:
    ro = flags & mnt.MS_RDONLY
    base = flags & (mnt.MS_NOSUID | mnt.MS_NODEV | mnt.MS_NOEXEC)
    target = make_in_root(root_fd, dest, directory=True)
    try:
        if cgroup is None:
            raise SystemFailure("cgroup mount requested but the container has no cgroup")
        if cgroup.version == 2:
            if new_cgroupns:
                mnt.mount("cgroup", fd_path(target), "cgroup2", base | ro)
            else:
                (_, host_dir), = cgroup.mount_sources()
                mnt.mount(host_dir, fd_path(target), None, mnt.MS_BIND | mnt.MS_REC)
                if ro:
                    with _on_top(root_fd, dest) as top:
                        _remount(top, mnt.MS_BIND | mnt.MS_RDONLY | base)
            return
        # cgroup v1: a tmpfs holding one mount per hierarchy, as on the host.
        mnt.mount("tmpfs", fd_path(target), "tmpfs", base, "mode=755")
        dest_fd = open_in_root(root_fd, dest)
        try:
            for name, host_dir in cgroup.mount_sources():
                sub = make_in_root(dest_fd, name, directory=True)
                try:
                    if new_cgroupns:
                        # Named hierarchies ("systemd") mount with name=…, controllers by name.
                        opts = ",".join(p if p in cgroup.paths else f"name={p}" for p in name.split(","))
                        mnt.mount("cgroup", fd_path(sub), "cgroup", base | ro, opts)
                    else:
                        mnt.mount(host_dir, fd_path(sub), None, mnt.MS_BIND | mnt.MS_REC)
                        if ro:
                            with _on_top(dest_fd, name) as top:
                                _remount(top, mnt.MS_BIND | mnt.MS_RDONLY | base)
                finally:
                    os.close(sub)
                # Co-mounted hierarchies ("cpu,cpuacct") get one symlink per controller.
                if "," in name:
                    for part in name.split(","):
                        try:
                            os.symlink(name, part, dir_fd=dest_fd)
                        except FileExistsError:
                            pass
            if ro:
                mnt.mount(None, fd_path(dest_fd), None, mnt.MS_REMOUNT | mnt.MS_RDONLY | base)
        finally:
            os.close(dest_fd)
    finally:
        os.close(target)


# --- after the switch to the new root ------------------------------------------------------

def finalize(config: dict) -> None:
    root = config.get("root", {})
    linux = config.get("linux", {})
    for path in linux.get("readonlyPaths", []):
        readonly_path(path)
    for path in linux.get("maskedPaths", []):
        mask_path(path)
    if root.get("readonly"):
        fd = os.open("/", os.O_PATH | os.O_CLOEXEC)
        try:
            _remount(fd, mnt.MS_BIND | mnt.MS_RDONLY)
        finally:
            os.close(fd)


def readonly_path(path: str) -> None:
    root = os.open("/", os.O_PATH | os.O_CLOEXEC)
    try:
        try:
            fd = open_in_root(root, path, os.O_PATH | os.O_NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError):
            return  # a missing path has nothing to protect (runc ignores it too)
        try:
            mnt.mount(fd_path(fd), fd_path(fd), None, mnt.MS_BIND | mnt.MS_REC)
            with _on_top(root, path) as top:
                _remount(top, mnt.MS_BIND | mnt.MS_RDONLY | mnt.MS_REC | mnt.MS_NOSUID
                         | mnt.MS_NODEV | mnt.MS_NOEXEC)
        finally:
            os.close(fd)
    finally:
        os.close(root)


def mask_path(path: str) -> None:
    """A directory gets an empty read-only tmpfs over it, anything else /dev/null."""
    root = os.open("/", os.O_PATH | os.O_CLOEXEC)
    try:
        try:
            fd = open_in_root(root, path, os.O_PATH | os.O_NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                mnt.mount("tmpfs", fd_path(fd), "tmpfs", mnt.MS_RDONLY, "size=0k,nr_inodes=1")
            else:
                null = _dev_null()
                try:
                    mnt.mount(fd_path(null), fd_path(fd), None, mnt.MS_BIND)
                finally:
                    os.close(null)
        finally:
            os.close(fd)
    finally:
        os.close(root)


def _dev_null() -> int:
    """The container's /dev/null, checked to be the real device (CVE-2025-31133)."""
    fd = os.open("/dev/null", os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    st = os.fstat(fd)
    if not stat.S_ISCHR(st.st_mode) or os.major(st.st_rdev) != 1 or os.minor(st.st_rdev) != 3:
        os.close(fd)
        raise SystemFailure("/dev/null in the container is not the null device")
    return fd
