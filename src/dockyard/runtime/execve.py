"""The last step of every container process: find the program as the container sees it, refuse
the host's own runtime binary (the /proc/self/exe class of attack, CVE-2019-5736), execve."""

import errno
import os
import stat

from dockyard.errors import SystemFailure

# Shebang chains the kernel follows (BINPRM_MAX_RECURSION) plus the final binary.
_MAX_INTERPRETERS = 5


class ExecError(SystemFailure):
    """Carries the exit status runc's callers map it to: 127 not found, 126 not executable."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def host_runtime_identity() -> set[tuple[int, int]]:
    """(st_dev, st_ino) of the interpreter running us, taken before entering the container."""
    st = os.stat("/proc/self/exe")
    return {(st.st_dev, st.st_ino)}


def lookup(program: str, env: list[str]) -> str:
    if "/" in program:
        _check_executable(program, program)
        return program
    path = next((e[5:] for e in env if e.startswith("PATH=")), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    for d in path.split(":"):
        candidate = os.path.join(d or ".", program)
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and os.access(candidate, os.X_OK):
            return candidate
    raise ExecError(f'exec: "{program}": executable file not found in $PATH', 127)


def _check_executable(path: str, program: str) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ExecError(f'exec: "{program}": stat {path}: no such file or directory', 127) from None
    except OSError as e:
        raise ExecError(f'exec: "{program}": stat {path}: {e.strerror}', 126) from None
    if stat.S_ISDIR(st.st_mode):
        raise ExecError(f'exec: "{program}": is a directory', 126)
    if not os.access(path, os.X_OK):
        raise ExecError(f'exec: "{program}": permission denied', 126)


def refuse_host_binary(path: str, host: set[tuple[int, int]]) -> None:
    """Refuse to run, inside the container, the interpreter this runtime runs on — directly,
    through /proc/self/exe, or as the interpreter of a #! script (the kernel would resolve
    it in this very process, whose exe is the host binary)."""
    for _ in range(_MAX_INTERPRETERS):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return  # execve itself will report it
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) in host:
                raise ExecError(f"exec: {path}: refusing to execute the runtime's own binary "
                                "in the container (CVE-2019-5736)", 126)
            head = os.read(fd, 256)
        finally:
            os.close(fd)
        if not head.startswith(b"#!"):
            return
        line = head[2:].split(b"\n", 1)[0].strip()
        if not line:
            return
        path = os.fsdecode(line.split()[0])


def resolve(args: list[str], env: list[str], host: set[tuple[int, int]]) -> str:
    """Checked while errors can still reach the caller (before `create` returns)."""
    if not args:
        raise ExecError("process.args must not be empty", 127)
    path = lookup(args[0], env)
    refuse_host_binary(path, host)
    return path


def execute(path: str, args: list[str], env: list[str], host: set[tuple[int, int]]) -> None:
    refuse_host_binary(path, host)  # again: the file may have changed since resolve()
    try:
        os.execve(path, args, dict(_split_env(env)))
    except OSError as e:
        status = 127 if e.errno == errno.ENOENT else 126
        raise ExecError(f'exec: "{args[0]}": {e.strerror}', status) from None


def _split_env(env: list[str]):
    for item in env:
        key, sep, value = item.partition("=")
        if sep:
            yield key, value
