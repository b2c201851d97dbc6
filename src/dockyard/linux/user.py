"""The user the container process runs as (config.md §POSIX process `user`).

`parse_user_spec` resolves `runc exec -u` / Docker `--user` strings against the container's own
/etc/passwd and /etc/group, read as text by the caller. It never calls getpwnam(3): that would
load NSS modules, and inside a container root they are the image's code (CVE-2019-14271)."""

import os
import re

from ..errors import InvalidArgument

_MAX_ID = 2**32 - 2  # (uid_t)-1 means "unchanged" to the set*id calls
_DECIMAL = re.compile(r"[0-9]+")


def _number(text: str) -> int | None:
    """A uid/gid written in decimal, or None; int() alone would accept ' 1', '+1', '1_0'."""
    if not _DECIMAL.fullmatch(text):
        return None
    return int(text)


def _entries(text: str, min_fields: int):
    """Lines of a passwd/group file split on ':', skipping blanks, comments and lines too
    short or whose id field (index 2) is not a valid number."""
    for line in text.split("\n"):
        # Only "\n" ends a line, as for glibc: str.splitlines() would also break on
        # characters such as "\x1c" and let a gecos field fake another entry.
        line = line.removesuffix("\r")
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) < min_fields or not fields[0]:
            continue
        number = _number(fields[2])
        if number is None or number > _MAX_ID:
            continue
        yield fields, number


def _passwd(text: str):
    """(name, uid, gid) for each well-formed passwd line."""
    for fields, uid in _entries(text, 4):
        gid = _number(fields[3])
        if gid is not None and gid <= _MAX_ID:
            yield fields[0], uid, gid


def _group(text: str):
    """(name, gid, members) for each well-formed group line."""
    for fields, gid in _entries(text, 3):
        members = fields[3].split(",") if len(fields) > 3 else []
        yield fields[0], gid, [m for m in members if m]


def _id(text: str, what: str) -> int | None:
    number = _number(text)
    if number is not None and number > _MAX_ID:
        raise InvalidArgument(f"{what} {text} is out of range")
    return number


def parse_user_spec(spec: str, passwd_text: str, group_text: str) -> tuple[int, int, list[int]]:
    """Resolve "user[:group]" to (uid, gid, additional_gids). Each part is a number or a name;
    a number is always an id (as in runc), even if some entry is named like it. A numeric
    user absent from passwd is fine and gets gid 0. Supplementary groups come from the group
    file only when no group is given, since an explicit group replaces them."""
    user, sep, group = spec.partition(":")
    if not user or (sep and not group):
        raise InvalidArgument(f"invalid user spec {spec!r}: want user[:group]")

    uid = _id(user, "uid")
    if uid is not None:
        match = next((e for e in _passwd(passwd_text) if e[1] == uid), None)
    else:
        match = next((e for e in _passwd(passwd_text) if e[0] == user), None)
        if match is None:
            raise InvalidArgument(f"unable to find user {user}: no matching entries in passwd file")
    name, uid, gid = match if match else (None, uid, 0)

    if group:
        gid = _id(group, "gid")
        if gid is None:
            found = next((e for e in _group(group_text) if e[0] == group), None)
            if found is None:
                raise InvalidArgument(
                    f"unable to find group {group}: no matching entries in group file")
            gid = found[1]
        return uid, gid, []

    additional: list[int] = []
    if name is not None:
        for _, group_gid, members in _group(group_text):
            if name in members and group_gid not in additional:
                additional.append(group_gid)
    return uid, gid, additional


def _setgroups_denied() -> bool:
    # "deny" in a user namespace whose gid map was written without CAP_SETGID in the parent.
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() == "deny"
    except FileNotFoundError:
        return False


def set_user(uid: int, gid: int, additional_gids: list[int], umask: int | None = None) -> None:
    """Become uid/gid with exactly these supplementary groups. The caller sets keepcaps first
    if capabilities must survive. No umask means the inherited one stays, as in runc."""
    if _setgroups_denied():
        if additional_gids:
            raise InvalidArgument("cannot set additional groups: setgroups is denied "
                                  "in this user namespace")
    else:
        # Also when empty: the runtime's own groups must not leak into the container.
        _call(os.setgroups, list(additional_gids), what=f"setgroups({additional_gids})")
    _call(os.setresgid, gid, gid, gid, what=f"setresgid({gid})")
    _call(os.setresuid, uid, uid, uid, what=f"setresuid({uid})")
    if umask is not None:
        os.umask(umask)


def _call(func, *args, what: str) -> None:
    try:
        func(*args)
    except OSError as e:
        raise OSError(e.errno, f"{what}: {e.strerror}") from None
