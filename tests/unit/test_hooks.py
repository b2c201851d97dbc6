"""OCI hooks: argv, exact env, state on stdin, timeouts, failures and warn_only."""

import json
import os
import time

import pytest

from dockyard.errors import InvalidArgument, SystemFailure
from dockyard.runtime.hooks import run_hooks

STATE = {"ociVersion": "1.2.0", "id": "c1", "status": "created", "pid": 42,
         "bundle": "/b", "annotations": {"a": "b"}}


def script(tmp_path, name, body):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def child_pids() -> set[int]:
    """This process's children, zombies included. Compared before and after a call rather than
    required empty: session fixtures (a test registry, say) may have children of their own."""
    pids = set()
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            pids.update(int(p) for p in f.read().split())
    return pids


def test_state_on_stdin_args_and_exact_env(tmp_path):
    before = child_pids()
    out = tmp_path / "out"
    hook = script(tmp_path, "h", f'cat > {out}.stdin; echo "$0|$1|$2" > {out}.argv; '
                                 f'env > {out}.env\n')
    run_hooks("createRuntime", [{"path": hook, "args": ["name0", "a b", "c"],
                                 "env": ["FOO=bar=baz", "EMPTY="]}], STATE)
    assert json.loads((tmp_path / "out.stdin").read_text()) == STATE
    # $0 is the script path (the kernel passes it to sh); $1.. are args[1:]
    assert (tmp_path / "out.argv").read_text() == f"{hook}|a b|c\n"
    env = set((tmp_path / "out.env").read_text().splitlines())
    # sh adds PWD (and maybe SHLVL, _); nothing of ours may leak in
    assert {"FOO=bar=baz", "EMPTY="} <= env
    assert not {e for e in env if e.split("=")[0] not in {"FOO", "EMPTY", "PWD", "SHLVL", "_"}}
    assert child_pids() <= before  # every hook reaped


def test_argv0_comes_from_args(tmp_path):
    out = tmp_path / "argv0"
    # a script's $0 is its path, whatever argv[0] was; `sh -c` shows argv[0] itself
    run_hooks("prestart", [{"path": "/bin/sh", "args": ["my-hook", "-c", f'echo "$0" > {out}']}],
              STATE)
    assert out.read_text() == "my-hook\n"


def test_missing_args_and_env(tmp_path):
    out = tmp_path / "out"
    hook = script(tmp_path, "h", f'echo "$#" > {out}; env > {out}.env\n')
    run_hooks("poststart", [{"path": hook}], STATE)
    assert out.read_text() == "0\n"
    assert all(e.split("=")[0] in {"PWD", "SHLVL", "_"}
               for e in (tmp_path / "out.env").read_text().splitlines())


def test_hooks_run_in_order_and_stop_at_first_failure(tmp_path):
    log = tmp_path / "log"
    hooks = [{"path": script(tmp_path, f"h{i}", f"echo {i} >> {log}\nexit {code}\n")}
             for i, code in enumerate([0, 3, 0])]
    with pytest.raises(SystemFailure) as e:
        run_hooks("createRuntime", hooks, STATE)
    assert log.read_text() == "0\n1\n"
    assert str(e.value) == f"createRuntime hook #1 ({hooks[1]['path']}) failed: exit status 3"


def test_failure_message_carries_stderr_tail(tmp_path):
    hook = script(tmp_path, "h", "echo noise; head -c 5000 /dev/zero | tr '\\0' x >&2; "
                                 "echo ' boom: no such device' >&2; exit 3\n")
    with pytest.raises(SystemFailure) as e:
        run_hooks("createContainer", [{"path": hook}], STATE)
    message = str(e.value)
    assert message.startswith(f"createContainer hook #0 ({hook}) failed: exit status 3: xxx")
    assert message.endswith("boom: no such device")
    assert len(message) < 1200


def test_stdout_is_used_when_stderr_is_empty(tmp_path):
    hook = script(tmp_path, "h", "echo only-stdout; exit 1\n")
    with pytest.raises(SystemFailure, match="exit status 1: only-stdout$"):
        run_hooks("prestart", [{"path": hook}], STATE)


def test_killed_by_signal(tmp_path):
    hook = script(tmp_path, "h", "kill -TERM $$\n")
    with pytest.raises(SystemFailure, match="failed: killed by signal SIGTERM"):
        run_hooks("prestart", [{"path": hook}], STATE)


def test_killed_by_a_realtime_signal(tmp_path):
    hook = script(tmp_path, "h", "kill -s 40 $$\n")
    with pytest.raises(SystemFailure, match="failed: killed by signal 40$"):
        run_hooks("prestart", [{"path": hook}], STATE)


def test_timeout_kills_the_hook(tmp_path):
    before = child_pids()
    pidfile = tmp_path / "pid"
    hook = script(tmp_path, "h", f"echo $$ > {pidfile}\nexec sleep 30\n")
    start = time.monotonic()
    with pytest.raises(SystemFailure) as e:
        run_hooks("poststart", [{"path": hook, "timeout": 1}], STATE)
    assert time.monotonic() - start < 5
    assert str(e.value) == f"poststart hook {hook} timed out after 1s"
    # reaped, not only killed
    assert not os.path.exists(f"/proc/{pidfile.read_text().strip()}")
    assert child_pids() <= before  # every hook reaped


def test_hook_that_never_reads_stdin_does_not_block(tmp_path):
    # The state is far bigger than a pipe buffer; the hook exits without reading it.
    hook = script(tmp_path, "h", "exit 0\n")
    state = dict(STATE, annotations={"big": "x" * 1_000_000})
    run_hooks("createRuntime", [{"path": hook, "timeout": 5}], state)
    # Same without a timeout: must still return, since the hook exited.
    run_hooks("createRuntime", [{"path": hook}], state)


def test_big_state_is_read_in_full(tmp_path):
    out = tmp_path / "stdin"
    hook = script(tmp_path, "h", f"sleep 0.2; cat > {out}\n")
    state = dict(STATE, annotations={"big": "y" * 1_000_000})
    run_hooks("createRuntime", [{"path": hook}], state)
    assert json.loads(out.read_text()) == state


def test_background_child_holding_output_does_not_hang(tmp_path):
    # A hook that daemonizes leaves a child holding stdout/stderr; its own exit ends the wait.
    hook = script(tmp_path, "h", "sleep 30 &\necho $! > " + str(tmp_path / "bg") + "\nexit 0\n")
    start = time.monotonic()
    run_hooks("poststart", [{"path": hook}], STATE)
    assert time.monotonic() - start < 5
    os.kill(int((tmp_path / "bg").read_text()), 9)


def test_warn_only_collects_failures_and_runs_the_rest(tmp_path):
    before = child_pids()
    log = tmp_path / "log"
    hooks = [
        {"path": script(tmp_path, "h0", f"echo 0 >> {log}\necho bad >&2\nexit 2\n")},
        {"path": "/nonexistent/hook"},
        {"path": "relative/hook"},
        {"path": script(tmp_path, "h3", "exec sleep 30\n"), "timeout": 1},
        {"path": script(tmp_path, "h4", f"echo 4 >> {log}\n")},
    ]
    warnings = run_hooks("poststop", hooks, STATE, warn_only=True)
    assert log.read_text() == "0\n4\n"
    assert warnings == [
        f"poststop hook #0 ({hooks[0]['path']}) failed: exit status 2: bad",
        "poststop hook #1 (/nonexistent/hook) failed: No such file or directory",
        "poststop hook #2 (relative/hook): path must be absolute",
        f"poststop hook {hooks[3]['path']} timed out after 1s",
    ]
    assert child_pids() <= before  # every hook reaped


def test_success_returns_no_warnings(tmp_path):
    assert run_hooks("poststop", [{"path": "/bin/true"}], STATE, warn_only=True) == []
    assert run_hooks("poststop", None, STATE) == []


@pytest.mark.parametrize("hook, message", [
    ({"path": "bin/true"}, "path must be absolute"),
    ({}, "path must be absolute"),
    ({"path": "/bin/true", "timeout": 0}, "timeout must be a positive"),
    ({"path": "/bin/true", "timeout": "5"}, "timeout must be a positive"),
    ({"path": "/bin/true", "env": ["NOEQUALS"]}, "is not KEY=value"),
    ({"path": "/bin/true", "env": [7]}, "is not KEY=value"),
    ({"path": "/bin/true", "args": "true"}, "args must be a list of strings"),
])
def test_invalid_hooks(hook, message):
    with pytest.raises(InvalidArgument, match=message):
        run_hooks("prestart", [hook], STATE)


def test_no_fd_leaks(tmp_path):
    before = set(os.listdir("/proc/self/fd"))
    hook = script(tmp_path, "h", "ls /proc/self/fd > " + str(tmp_path / "fds") + "\nexit 1\n")
    with pytest.raises(SystemFailure):
        run_hooks("prestart", [{"path": hook}], STATE)
    assert set(os.listdir("/proc/self/fd")) == before
    # the hook sees stdin/stdout/stderr and the fd ls opens for the directory, nothing else
    assert len((tmp_path / "fds").read_text().split()) <= 4
