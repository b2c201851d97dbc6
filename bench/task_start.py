"""Task start latency: create + start + wait of `true` through the whole lifecycle manager,
dockyard-containerd beside Debian's containerd + runc, measured in the same run.

    .venv/bin/python bench/task_start.py [--rounds N] [--warmup N] [--json]

Each sample is the wall time of one foreground `run --rm` of `true` from the busybox rootfs
(a plain directory, no image, no snapshot), as an operator's CLI sees it: container record,
task create (shim + runtime create), start, output attached, wait, task and container delete.
  dockyard-containerd   `dockyard-ctr run --rm --rootfs DIR ID true` against a private
                        dockyard-containerd (its own socket, root and state), dockyard-runc
  containerd            `ctr run --rm --rootfs DIR ID true` against a private Debian containerd
                        (tests/runtime/containerd_peer.py), containerd-shim-runc-v2 and runc
Both clients are fresh processes every time, so each figure includes its CLI's start-up (a
Python interpreter and grpc for ours, a Go binary for ctr); the `version` row, one round trip
that does no container work, shows that floor for each. Rounds interleave the two sides and
alternate which goes first. Medians, p90 and the ratio ours/peer; a side that cannot run here
is printed as unavailable with its reason, never given a figure. Everything is cleaned up at
the end, also on Ctrl-C: tasks, containers, shims (by pid), cgroups, temp dirs."""

import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (REPO, Interrupted, Reaper, first_line, fmt_ms, median, p90,  # noqa: E402
                     remove_cgroup_tree, summary, table, timed, unwind_on_signals)
from tests.fixtures import busybox  # noqa: E402

sys.path.insert(0, os.path.join(REPO, "tests", "runtime"))
from containerd_peer import Containerd, missing_tools  # noqa: E402

BIN = os.path.join(REPO, ".venv", "bin")
DAEMON, CTR, RUNC = (os.path.join(BIN, n) for n in ("dockyard-containerd", "dockyard-ctr", "dockyard-runc"))
NAMESPACE = "bench"
ROWS = ("run --rm /bin/true", "version")


class Side:
    """One lifecycle manager under test. `argv(*args)` is its ctr command line."""

    name = ""

    def __init__(self):
        self.error = ""
        self.samples: dict[str, list[float]] = {row: [] for row in ROWS}

    def run_once(self, row: str, measured: bool) -> None:
        argv = self.argv("run", "--rm", "--rootfs", self.rootfs, self.new_id(), "/bin/true") if row == ROWS[0] \
            else self.argv("version")
        ms, r = timed(argv, stdout=subprocess.DEVNULL, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:1] + list(argv[-4:]))}: exit {r.returncode}: "
                               f"{first_line((r.stderr or b'').decode(errors='replace'))}")
        if measured:
            self.samples[row].append(ms)


class Ours(Side):
    name = "dockyard-containerd"

    def __init__(self, workdir: str, rootfs: str):
        super().__init__()
        self.base = os.path.join(workdir, "ours")
        self.address = os.path.join(self.base, "containerd.sock")
        self.state = os.path.join(self.base, "state")
        self.rootfs = rootfs
        self.ids: list[str] = []
        self.proc = None

    def start(self) -> None:
        os.makedirs(self.base)
        self.log = open(os.path.join(self.base, "daemon.log"), "w+")
        self.proc = subprocess.Popen([DAEMON, "--address", self.address, "--root", os.path.join(self.base, "root"),
                                      "--state", self.state], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockyard-containerd exited: {self._log_tail()}")
            with open(self.log.name) as f:
                if 'msg="serving"' in f.read():
                    return
            time.sleep(0.05)
        raise RuntimeError("dockyard-containerd did not come up in 30 s")

    def _log_tail(self) -> str:
        with open(self.log.name, errors="replace") as f:
            lines = [line for line in f.read().splitlines() if "level=error" in line] or ["(nothing logged)"]
        return lines[-1]

    def argv(self, *args: str) -> list[str]:
        return [CTR, "--address", self.address, "--namespace", NAMESPACE, *args]

    def new_id(self) -> str:
        cid = f"b{uuid.uuid4().hex[:10]}"
        self.ids.append(cid)
        return cid

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            r = subprocess.run(self.argv("tasks", "ls", "-q"), capture_output=True, text=True, timeout=60)
            for cid in r.stdout.split():
                subprocess.run(self.argv("tasks", "rm", "-f", cid), capture_output=True, timeout=60)
            r = subprocess.run(self.argv("containers", "ls", "-q"), capture_output=True, text=True, timeout=60)
            for cid in r.stdout.split():
                subprocess.run(self.argv("containers", "rm", cid), capture_output=True, timeout=60)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # Shims outlive the daemon by design: whatever is still there is killed by pid.
        for pid_file in glob.glob(os.path.join(self.state, "shims", "*", "*", "shim.pid")):
            try:
                with open(pid_file) as f:
                    os.kill(int(f.read()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        for state in glob.glob(os.path.join(self.state, "runc", "*", "*")):
            subprocess.run([RUNC, "--root", os.path.dirname(state), "delete", "--force", os.path.basename(state)],
                           capture_output=True, timeout=60)
        for cid in self.ids:
            remove_cgroup_tree(f"/{NAMESPACE}/{cid}")
        remove_cgroup_tree(f"/{NAMESPACE}", only_if_empty=True)
        if getattr(self, "log", None):
            self.log.close()


class Peer(Side):
    name = "containerd"

    def __init__(self, rootfs: str):
        super().__init__()
        self.rootfs = rootfs
        self.ctd: Containerd | None = None

    def start(self) -> None:
        why = missing_tools()
        if why:
            raise RuntimeError(why)
        self.ctd = Containerd()
        self.ctd.start()

    def argv(self, *args: str) -> list[str]:
        if args and args[0] == "run":  # ctr's foreground stdio goes through fifos
            args = ("run", "--fifo-dir", self.ctd.fifo_dir, *args[1:])
        return self.ctd.ctr_argv(*args)

    def new_id(self) -> str:
        return self.ctd.new_id("bench")

    def cleanup(self) -> None:
        if self.ctd is not None:
            self.ctd.cleanup()


def measure(sides: list[Side], rounds: int, warmup: int, log) -> None:
    for n in range(warmup + rounds):
        if n < warmup:
            log(f"warm-up {n + 1}/{warmup}")
        elif (n - warmup) % 5 == 0:
            log(f"round {n - warmup + 1}/{rounds}")
        order = sides if n % 2 == 0 else sides[::-1]
        for side in order:
            if side.error:
                continue
            try:
                for row in ROWS:
                    side.run_once(row, measured=n >= warmup)
            except (RuntimeError, OSError) as e:
                side.error = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            Reaper.reap()  # shims of finished tasks were re-parented to us


def report(sides: list[Side], rounds: int, warmup: int) -> tuple[str, dict]:
    data = {"rounds": rounds, "warmup": warmup, "sides": {}}
    for side in sides:
        data["sides"][side.name] = {"error": side.error} if side.error else \
            {row: summary(s) for row, s in side.samples.items()}
    rows = []
    for row in ROWS:
        cells = [row]
        for side in sides:
            if side.error:
                cells.append(f"unavailable ({side.error})")
            else:
                s = side.samples[row]
                cells.append(f"{fmt_ms(median(s))} / {fmt_ms(p90(s))}")
        ours, peer = sides
        if not ours.error and not peer.error:
            ratio = median(ours.samples[row]) / median(peer.samples[row])
            cells.append(f"{ratio:.2f}x")
            data.setdefault("ratio_ours_over_peer", {})[row] = round(ratio, 3)
        else:
            cells.append("-")
        rows.append(cells)
    header = ["ms, median / p90", *(s.name for s in sides), "ours/peer"]
    if any(s.error for s in sides):  # an unavailable side's reason is long: one line each
        text = [f"task start latency, {rounds} rounds after {warmup} warm-up, ms median / p90"]
        for side in sides:
            if side.error:
                text.append(f"  {side.name}: unavailable ({side.error})")
            else:
                text.append(f"  {side.name}: " + "; ".join(
                    f"{row} {fmt_ms(median(s))} / {fmt_ms(p90(s))}" for row, s in side.samples.items()))
        return "\n".join(text), data
    title = f"task start latency, {rounds} rounds after {warmup} warm-up (wall ms of one CLI call)"
    return title + "\n" + table(header, rows), data


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="measured rounds (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured rounds first (default 2)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.warmup < 0:
        parser.error("--rounds must be at least 1, --warmup at least 0")
    if os.geteuid() != 0:
        print("bench/task_start.py needs root", file=sys.stderr)
        return 2
    unwind_on_signals()
    Reaper()
    log = (lambda msg: None) if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    workdir = tempfile.mkdtemp(prefix="dyts-", dir="/tmp")  # short: unix socket paths
    sides: list[Side] = []
    try:
        rootfs = str(busybox.build_rootfs(os.path.join(workdir, "rootfs")))
        sides = [Ours(workdir, rootfs), Peer(rootfs)]
        for side in sides:
            try:
                side.start()
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                side.error = first_line(str(e)) if str(e).strip() else type(e).__name__
        measure(sides, args.rounds, args.warmup, log)
        text, data = report(sides, args.rounds, args.warmup)
    except (KeyboardInterrupt, Interrupted):
        print("interrupted: cleaned up", file=sys.stderr)
        return 130
    finally:
        for side in sides:
            try:
                side.cleanup()
            except Exception as e:  # noqa: BLE001 - the other side's clean-up still runs
                print(f"clean-up of {side.name}: {e}", file=sys.stderr)
        Reaper.reap()
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(data, indent=2) if args.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
