"""mount(2), umount2(2), pivot_root(2) and the mount-option vocabulary of config.json."""

import ctypes
import os

from .libc import SYS_mount_setattr, SYS_pivot_root, check, libc, syscall

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

# config.json mount options → (flags to set, flags to clear); runtime-spec config.md §Linux mount options.
FLAG_OPTIONS = {
    "async": (0, MS_SYNCHRONOUS), "atime": (0, MS_NOATIME), "bind": (MS_BIND, 0),
    "defaults": (0, 0), "dev": (0, MS_NODEV), "diratime": (0, MS_NODIRATIME),
    "dirsync": (MS_DIRSYNC, 0), "exec": (0, MS_NOEXEC), "mand": (MS_MANDLOCK, 0),
    "noatime": (MS_NOATIME, 0), "nodev": (MS_NODEV, 0), "nodiratime": (MS_NODIRATIME, 0),
    "noexec": (MS_NOEXEC, 0), "nomand": (0, MS_MANDLOCK), "norelatime": (0, MS_RELATIME),
    "nostrictatime": (0, MS_STRICTATIME), "nosuid": (MS_NOSUID, 0), "rbind": (MS_BIND | MS_REC, 0),
    "relatime": (MS_RELATIME, 0), "remount": (MS_REMOUNT, 0), "ro": (MS_RDONLY, 0),
    "rw": (0, MS_RDONLY), "silent": (MS_SILENT, 0), "strictatime": (MS_STRICTATIME, 0),
    "suid": (0, MS_NOSUID), "sync": (MS_SYNCHRONOUS, 0), "nosymfollow": (MS_NOSYMFOLLOW, 0),
    "symfollow": (0, MS_NOSYMFOLLOW), "lazytime": (MS_LAZYTIME, 0), "nolazytime": (0, MS_LAZYTIME),
    "loud": (0, MS_SILENT),
}

PROPAGATION_OPTIONS = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED, "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
}


def parse_options(options: list[str]) -> tuple[int, list[int], str]:
    """Split config.json options into mount flags, propagation changes and fs data."""
    flags = 0
    propagation = []
    data = []
    for opt in options:
        if opt in FLAG_OPTIONS:
            set_, clear = FLAG_OPTIONS[opt]
            flags = (flags | set_) & ~clear
        elif opt in PROPAGATION_OPTIONS:
            propagation.append(PROPAGATION_OPTIONS[opt])
        elif opt in RECURSIVE_ATTRS or opt in RUNTIME_OPTIONS or opt.startswith("x-"):
            # Recursive attributes (rro, …) are applied after the mount by mount_setattr; the
            # runtime options and x- (userspace) options never reach the kernel.
            continue
        else:
            data.append(opt)
    return flags, propagation, ",".join(data)


RUNTIME_OPTIONS = {"tmpcopyup", "idmap", "ridmap"}

# mount_setattr(2) attributes for the recursive options: name → (attr to set, attr to clear).
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_NOSYMFOLLOW = 0x200000
RECURSIVE_ATTR_BITS = {
    "rro": (MOUNT_ATTR_RDONLY, 0), "rrw": (0, MOUNT_ATTR_RDONLY),
    "rnosuid": (MOUNT_ATTR_NOSUID, 0), "rsuid": (0, MOUNT_ATTR_NOSUID),
    "rnodev": (MOUNT_ATTR_NODEV, 0), "rdev": (0, MOUNT_ATTR_NODEV),
    "rnoexec": (MOUNT_ATTR_NOEXEC, 0), "rexec": (0, MOUNT_ATTR_NOEXEC),
    "rnodiratime": (MOUNT_ATTR_NODIRATIME, 0), "rdiratime": (0, MOUNT_ATTR_NODIRATIME),
    "rrelatime": (MOUNT_ATTR_RELATIME, MOUNT_ATTR__ATIME), "rnorelatime": (0, 0),
    "rnoatime": (MOUNT_ATTR_NOATIME, MOUNT_ATTR__ATIME), "ratime": (0, 0),
    "rstrictatime": (MOUNT_ATTR_STRICTATIME, MOUNT_ATTR__ATIME), "rnostrictatime": (0, 0),
    "rnosymfollow": (MOUNT_ATTR_NOSYMFOLLOW, 0), "rsymfollow": (0, MOUNT_ATTR_NOSYMFOLLOW),
}
RECURSIVE_ATTRS = set(RECURSIVE_ATTR_BITS)


def _b(s):
    return None if s is None else os.fsencode(s)


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    check(libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data or None)),
          f"mount {source} on {target} ({fstype})")


def umount(target: str, flags: int = 0) -> None:
    check(libc.umount2(_b(target), flags), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    syscall(SYS_pivot_root, _b(new_root), _b(put_old), what="pivot_root")


def chroot(path: str) -> None:
    os.chroot(path)


AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def apply_recursive_attrs(target_fd: int, options: list[str]) -> None:
    """Set the r* options (rro, rnosuid, …) on a mount and everything below it."""
    attr_set = attr_clr = 0
    for opt in options:
        if opt in RECURSIVE_ATTR_BITS:
            s, c = RECURSIVE_ATTR_BITS[opt]
            attr_set |= s
            attr_clr |= c
    if not (attr_set or attr_clr):
        return
    attr = _MountAttr(attr_set, attr_clr, 0, 0)
    syscall(SYS_mount_setattr, target_fd, b"", AT_EMPTY_PATH | AT_RECURSIVE,
            ctypes.byref(attr), ctypes.sizeof(attr), what="mount_setattr")
