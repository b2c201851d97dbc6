"""OCI lifecycle hooks (config.md §POSIX-platform Hooks).

Each hook is executed directly (no shell) with exactly its `args` and `env`, the container
state JSON on its stdin, and an optional timeout in seconds. Hooks may run inside the container
init after fork (createContainer, startContainer), so this module starts no threads: one poll
loop feeds stdin without blocking, collects the output tails and waits on a pidfd."""

import json
import os
import select
import signal
import time

from ..errors import DockyardError, InvalidArgument, SystemFailure

_TAIL = 4096  # bytes of hook output kept for the error message

subprocess = None  # imported by preload(): most containers have no hooks


def preload() -> None:
    """Import what running a hook needs. The runtime calls this before it forks the container's
    init, which runs createContainer/startContainer hooks after pivot_root, where importing
    is impossible (and would be unsafe)."""
    global subprocess
    if subprocess is None:
        import subprocess as module
        subprocess = module


def run_hooks(kind: str, hooks: list[dict] | None, state: dict, *,
              warn_only: bool = False) -> list[str]:
    """Run `hooks` in order. A failure raises, unless warn_only (poststop, and poststart if the
    caller wants the spec's wording): then it becomes a warning, the rest still run, and the
    warnings are returned for the caller to log."""
    if hooks:
        preload()
    payload = json.dumps(state).encode()
    warnings = []
    for index, hook in enumerate(hooks or []):
        try:
            _run(kind, index, hook, payload)
        except DockyardError as e:
            if not warn_only:
                raise
            warnings.append(str(e))
    return warnings


def _run(kind: str, index: int, hook: dict, payload: bytes) -> None:
    path = hook.get("path")
    label = f"{kind} hook #{index} ({path})"
    if not isinstance(path, str) or not os.path.isabs(path):
        raise InvalidArgument(f"{label}: path must be absolute")
    timeout = hook.get("timeout")
    if timeout is not None and (type(timeout) is not int or timeout <= 0):
        raise InvalidArgument(f"{label}: timeout must be a positive number of seconds")
    argv = hook.get("args") or [path]
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise InvalidArgument(f"{label}: args must be a list of strings")
    env = {}
    for entry in hook.get("env") or []:
        key, sep, value = entry.partition("=") if isinstance(entry, str) else ("", "", "")
        if not key or not sep:
            raise InvalidArgument(f"{label}: env entry {entry!r} is not KEY=value")
        env[key] = value

    stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        proc = subprocess.Popen(argv, executable=path, env=env,
                                stdin=stdin_r, stdout=out_w, stderr=err_w, close_fds=True)
    except OSError as e:
        for fd in (stdin_r, stdin_w, out_r, out_w, err_r, err_w):
            os.close(fd)
        raise SystemFailure(f"{label} failed: {e.strerror}") from None
    for fd in (stdin_r, out_w, err_w):
        os.close(fd)
    try:
        output = _converse(proc, stdin_w, {out_r: b"", err_r: b""}, payload, timeout)
    finally:
        if proc.returncode is None:  # timed out or failed mid-way: never leave it behind
            proc.kill()
            proc.wait()
    if output is None:
        raise SystemFailure(f"{kind} hook {path} timed out after {timeout}s")
    if proc.returncode != 0:
        tail = (output[err_r] or output[out_r])[-1024:].decode(errors="replace").strip()
        if proc.returncode < 0:
            try:
                name = signal.Signals(-proc.returncode).name
            except ValueError:  # real-time signals have no name
                name = str(-proc.returncode)
            reason = f"killed by signal {name}"
        else:
            reason = f"exit status {proc.returncode}"
        raise SystemFailure(f"{label} failed: {reason}" + (f": {tail}" if tail else ""))


def _converse(proc, stdin_w: int, output: dict[int, bytes],
              payload: bytes, timeout: int | None) -> dict[int, bytes] | None:
    """Write payload, read output, until the hook exits; None on timeout. Ends at the hook's
    exit even when a child it left behind still holds the pipes. Closes the fds it is given."""
    deadline = None if timeout is None else time.monotonic() + timeout
    fds = [stdin_w, *output]
    try:
        pidfd = os.pidfd_open(proc.pid)
        fds.append(pidfd)
        poller = select.poll()
        for fd in fds:
            os.set_blocking(fd, False)
            poller.register(fd, select.POLLOUT if fd == stdin_w else select.POLLIN)
        while True:
            wait_ms = None if deadline is None else max(0, deadline - time.monotonic()) * 1000
            events = poller.poll(wait_ms)
            if not events:
                return None
            exited = False
            for fd, mask in events:
                if fd == pidfd:
                    exited = True
                elif fd == stdin_w:
                    payload = _feed(stdin_w, payload, mask)
                    if not payload:  # all written, or the hook closed its stdin
                        poller.unregister(stdin_w)
                        os.close(stdin_w)
                        fds.remove(stdin_w)
                elif not _drain(fd, output):
                    poller.unregister(fd)
            if exited:
                for fd in output:
                    _drain(fd, output)
                proc.wait()
                return output
    finally:
        for fd in fds:
            os.close(fd)


def _feed(fd: int, payload: bytes, mask: int) -> bytes:
    """Write what the pipe takes now; return the rest (empty once done or unwritable)."""
    if mask & (select.POLLERR | select.POLLHUP):
        return b""
    try:
        return payload[os.write(fd, payload):]
    except BlockingIOError:
        return payload
    except BrokenPipeError:
        return b""


def _drain(fd: int, output: dict[int, bytes]) -> bool:
    """Read what is there into the output tail; False at end of file."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        output[fd] = (output[fd] + chunk)[-_TAIL:]
