"""What every benchmark here shares: the runtimes under test, timing one command, medians, a
child-subreaper that reaps container processes, cgroup clean-up, and the aligned table.

Benchmarks measure; they never pass or fail on a figure. A peer that does not work on this
host is reported as unavailable with the first line of its error, never given a number."""

import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from tests.fixtures.host import cgroup_roots  # noqa: E402

CGROUP_MOUNT = "/sys/fs/cgroup"


@dataclass
class Runtime:
    """One OCI runtime CLI under test; `env` is added to the benchmark's own environment."""

    name: str
    binary: str
    env: dict = field(default_factory=dict)
    root: str = ""           # its --root state directory, set by the benchmark
    error: str = ""          # why it is unavailable on this host, if it is
    version: str = ""
    ours: bool = False

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", self.root, *args]

    def environ(self) -> dict:
        env = dict(os.environ)
        env.update(self.env)
        return {k: v for k, v in env.items() if v is not None}


def ours_binary() -> str:
    return os.path.join(REPO, ".venv", "bin", "dockyard-runc")


def peers() -> list[Runtime]:
    """Debian's runc and crun, where installed."""
    found = []
    for name, path in (("runc", "/usr/sbin/runc"), ("crun", "/usr/bin/crun")):
        binary = path if os.access(path, os.X_OK) else shutil.which(name)
        runtime = Runtime(name, binary or path)
        if not binary:
            runtime.error = f"{path} not installed"
        found.append(runtime)
    return found


def first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return "(no message)"


def version_line(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    except OSError as e:
        return f"({e.strerror})"
    return first_line(out.stdout or out.stderr)


def timed(argv: list[str], env: dict | None = None, stdout=subprocess.DEVNULL, stderr=None,
          timeout: float = 60) -> tuple[float, subprocess.CompletedProcess]:
    """Run `argv` once; wall time in ms from spawn to exit, as a caller of the CLI sees it.
    stdin is /dev/null; by default stderr is captured into the result (a pipe: only for commands
    that do not hand their stdio to a container that outlives them).

    The timeout is a watchdog thread, not subprocess's own: with a timeout, Popen.wait polls
    with sleeps of up to 50 ms, which would round every figure up to that grain."""
    t0 = time.perf_counter_ns()
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=stdout,
                            stderr=subprocess.PIPE if stderr is None else stderr)
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    try:
        out, err = proc.communicate()
    finally:
        watchdog.cancel()
    ms = (time.perf_counter_ns() - t0) / 1e6
    return ms, subprocess.CompletedProcess(argv, proc.returncode, out, err)


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def p90(samples: list[float]) -> float:
    if len(samples) < 2:
        return samples[0]
    return statistics.quantiles(samples, n=10, method="inclusive")[8]


def summary(samples: list[float]) -> dict:
    return {"median_ms": round(median(samples), 3), "p90_ms": round(p90(samples), 3),
            "n": len(samples), "samples_ms": [round(s, 3) for s in samples]}


class Reaper:
    """Makes this process the child subreaper, as a shim is: a detached container's init is
    re-parented here when the runtime's `create` exits, and reaped here once it exits, instead
    of piling up as zombies under a PID 1 that may not reap. Call `reap()` only when no
    subprocess of ours is running (subprocess.run has returned), so no exit status is stolen."""

    def __init__(self):
        from dockyard.linux.prctl import set_child_subreaper
        set_child_subreaper()

    @staticmethod
    def reap() -> int:
        reaped = 0
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return reaped
            if pid == 0:
                return reaped
            reaped += 1


def cgroup_hierarchies() -> list[str]:
    """Every cgroup mount under /sys/fs/cgroup (v1 controllers, name=systemd, the unified v2)."""
    return sorted({m for m in cgroup_roots() if m.startswith(CGROUP_MOUNT)})


def remove_cgroup_tree(parent: str, only_if_empty: bool = False) -> list[str]:
    """rmdir `parent` (an absolute cgroupsPath such as /dockyard-bench/123) and everything below
    it in every hierarchy, children first. Returns what could not be removed. With
    `only_if_empty`, just try `parent` itself and keep quiet if it is busy (shared parents)."""
    left = []
    for mount in cgroup_hierarchies():
        top = os.path.join(mount, parent.lstrip("/"))
        if not os.path.isdir(top):
            continue
        if only_if_empty:
            try:
                os.rmdir(top)
            except OSError:
                pass
            continue
        for dirpath, _, _ in sorted(os.walk(top, topdown=False), key=lambda w: -w[0].count("/")):
            try:
                os.rmdir(dirpath)
            except OSError as e:
                left.append(f"{dirpath}: {e.strerror}")
    return left


class Interrupted(Exception):
    """SIGTERM or SIGHUP: unwind like Ctrl-C, so every clean-up still runs."""


def unwind_on_signals() -> None:
    def handler(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def clean_up_sides(sides) -> None:
    """Every side's clean-up (a failing one does not stop the others); a second Ctrl-C must not
    skip it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for side in sides:
        try:
            side.cleanup()
        except Exception as e:  # noqa: BLE001 - the other side's clean-up still runs
            print(f"clean-up of {side.name}: {e}", file=sys.stderr)


def side_lines(sides) -> list[str]:
    """The lines under a comparison table: each side's version, or why it could not run, and its notes."""
    lines = []
    for side in sides:
        lines.append(f"{side.name}: unavailable ({side.error})" if side.error else f"{side.name}: {side.version}")
        lines += [f"  note: {note}" for note in side.notes]
    return lines


def fmt_ms(value: float) -> str:
    return f"{value:.1f}" if value < 1000 else f"{value:.0f}"


def comparison_row(label: str, ours, peer, key: str) -> tuple[list[str], float | None]:
    """One table row, `label` then "median / p90" of each side's samples[key] and the ratio
    median(ours)/median(peer); each side has .samples (key → ms) and .error (it did not run)."""
    cells = [label]
    for side in (ours, peer):
        s = side.samples.get(key)
        cells.append(f"{fmt_ms(median(s))} / {fmt_ms(p90(s))}" if s and not side.error
                     else "unavailable" if side.error else "-")
    o, p = ours.samples.get(key), peer.samples.get(key)
    if o and p and not ours.error and not peer.error:
        ratio = round(median(o) / median(p), 3)
        return cells + [f"{ratio:.2f}x"], ratio
    return cells + ["-"], None


def comparison_rows(rows: list[str], ours, peer) -> tuple[list[list[str]], dict[str, float]]:
    """comparison_row for each of `rows` (its label is its key): the table rows and the ratios."""
    cells_rows, ratios = [], {}
    for row in rows:
        cells, ratio = comparison_row(row, ours, peer, row)
        cells_rows.append(cells)
        if ratio is not None:
            ratios[row] = ratio
    return cells_rows, ratios


def table(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned first column, right-aligned others; rows of a single cell span the table."""
    width = [max(len(r[i]) for r in [header, *rows] if len(r) > 1) for i in range(len(header))]
    lines = []
    for r in [header, *rows]:
        if len(r) == 1:
            lines.append(r[0])
            continue
        cells = [r[0].ljust(width[0])] + [c.rjust(w) for c, w in zip(r[1:], width[1:])]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
