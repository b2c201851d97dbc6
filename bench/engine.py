"""Container engine: dockyardd beside Debian's dockerd (docker.io 20.10), both driven by the same
docker CLI (/usr/local/bin/docker) in the same run.

    .venv/bin/python bench/engine.py [--rounds N] [--warmup N] [--concurrent-rounds N]
                                     [--concurrency N] [--json]

Rows (wall ms as the caller of the docker CLI sees it):
  run --rm true     `docker run --rm --network none busybox true`: one CLI process doing
                    create, attach, start, wait for the exit, and the removal of the container
  version           `docker version`: CLI start-up and two round trips that do no container
                    work, the floor every command pays (the same Go CLI on both sides)
  50 x run -d       `docker run -d --network none busybox sleep 30` started as --concurrency
                    (default 50) CLI processes at once; from the first spawn to the last CLI's
                    exit (`run -d` returns once the container is started, i.e. running); then
                    a check that `docker ps` lists all of them, then `docker rm -f` (untimed)
  dockyardd         a private dockyardd (tests/engine/conftest.py Engine: own socket, data and
                    exec roots, cgroup parent, its own dockyard-containerd), busybox loaded with
                    `dockyard-ctr images load` of build/fixtures/busybox/busybox.docker.tar
  dockerd           a private dockerd (tests/fixtures/dockerd.py: own roots, own containerd,
                    --bridge none, overlay2), the same archive loaded with `docker load`
Both sides get `--network none` on every run: the peer runs with --bridge none (no docker0, no
iptables), so a run without it would not compare like with like.

Rounds interleave the sides and alternate which goes first. Medians, p90 and
median(ours)/median(peer); a side that cannot run here is printed as unavailable with the first
line of its error, never given a figure. Everything is cleaned up at the end, also on Ctrl-C:
containers removed through each engine, both daemons (and their containerds and shims) stopped
by pid, mounts, cgroups and temp dirs removed."""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (REPO, Interrupted, Reaper, cgroup_hierarchies, clean_up_sides,  # noqa: E402
                     comparison_rows, first_line, side_lines, summary, table, timed, unwind_on_signals)
from tests.engine.conftest import DOCKER, Engine  # noqa: E402
from tests.fixtures.dockerd import Dockerd, missing_tools  # noqa: E402

ARCHIVE = os.path.join(REPO, "build", "fixtures", "busybox", "busybox.docker.tar")
IMAGE = "busybox"
ROWS = ("run --rm true", "version")
RUN_TIMEOUT = 120


class Unavailable(Exception):
    pass


def _err(r: subprocess.CompletedProcess) -> str:
    text = r.stderr if isinstance(r.stderr, str) else (r.stderr or b"").decode(errors="replace")
    return first_line(text) if text.strip() else f"exit {r.returncode}"


def _argv(row: str) -> list[str]:
    if row == "run --rm true":
        return [DOCKER, "run", "--rm", "--network", "none", IMAGE, "true"]
    return [DOCKER, "version"]


class Side:
    name = ""
    ours = False

    def __init__(self):
        self.error = ""
        self.version = ""
        self.samples: dict[str, list[float]] = {}
        self.notes: list[str] = []

    def env(self) -> dict:
        raise NotImplementedError

    def cli(self, *args: str, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess:
        return subprocess.run([DOCKER, *args], env=self.env(), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def run_once(self, row: str, measured: bool) -> None:
        ms, r = timed(_argv(row), env=self.env(), timeout=RUN_TIMEOUT)
        if r.returncode != 0:
            raise Unavailable(f"{row}: {_err(r)}")
        if measured:
            self.samples.setdefault(row, []).append(ms)

    def concurrent_once(self, n: int, measured: bool) -> None:
        """n `docker run -d` at once; ms from the first spawn to the last exit; then remove them."""
        argv = [DOCKER, "run", "-d", "--network", "none", IMAGE, "sleep", "30"]
        env = self.env()
        procs: list[subprocess.Popen] = []
        t0 = time.perf_counter_ns()
        try:
            for _ in range(n):
                procs.append(subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE))
            watchdog = threading.Timer(RUN_TIMEOUT, lambda: [p.kill() for p in procs])
            watchdog.start()
            try:
                outs = [p.communicate() for p in procs]
            finally:
                watchdog.cancel()
            ms = (time.perf_counter_ns() - t0) / 1e6
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        ids = [out.decode().strip() for (out, _), p in zip(outs, procs) if p.returncode == 0]
        failed = [first_line(err.decode(errors="replace")) for (_, err), p in zip(outs, procs) if p.returncode]
        running = set(self.cli("ps", "-q", "--no-trunc").stdout.split())
        self.remove_all()
        if failed:
            raise Unavailable(f"{len(failed)} of {n} `run -d` failed: {failed[0]}")
        if not set(ids) <= running:
            self.note(f"{len(set(ids) - running)} of {n} containers were not running when all CLIs had returned")
        if measured:
            self.samples.setdefault(f"{n} x run -d", []).append(ms)

    def remove_all(self) -> None:
        ids = self.cli("ps", "-aq").stdout.split()
        if ids:
            r = self.cli("rm", "-f", *ids, timeout=300)
            if r.returncode != 0:
                self.note(f"docker rm -f: {_err(r)}")


class Ours(Side):
    name = "dockyardd"
    ours = True

    def __init__(self):
        super().__init__()
        self.engine: Engine | None = None

    def start(self) -> None:
        self.engine = Engine()
        self.engine.cgroup_parent = "/dockyard-bench-" + uuid.uuid4().hex[:8]
        # Engine logs at debug for the tests; the benchmark runs at the default level, as dockerd does.
        argv = self.engine.argv()
        i = argv.index("--log-level")
        del argv[i:i + 2]
        self.engine.argv = lambda: argv
        try:
            self.engine.start()
        except AssertionError as e:
            raise Unavailable(first_line(str(e))) from None
        r = self.engine.ctr("images", "load", "-i", ARCHIVE)
        if r.returncode != 0:
            raise Unavailable(f"dockyard-ctr images load: {_err(r)}")
        v = self.cli("version", "--format", "{{.Server.Version}}")
        self.version = f"dockyardd {v.stdout.strip()}" if v.returncode == 0 else ""

    def env(self) -> dict:
        return self.engine.env

    def cleanup(self) -> None:
        if self.engine is None:
            return
        for what in self.engine.cleanup():
            print(f"clean-up of dockyardd: removed by force: {what}", file=sys.stderr)


class Peer(Side):
    name = "dockerd"

    def __init__(self):
        super().__init__()
        self.dockerd: Dockerd | None = None
        # dockerd puts container cgroups under /docker in every hierarchy; remove it if we made it
        self.cgroup_dirs = [os.path.join(m, "docker") for m in cgroup_hierarchies()
                            if not os.path.exists(os.path.join(m, "docker"))]

    def start(self) -> None:
        why = missing_tools()
        if why:
            raise Unavailable(why)
        self.dockerd = Dockerd()
        try:
            self.dockerd.start()
        except RuntimeError as e:
            raise Unavailable(first_line(str(e))) from None
        r = self.cli("load", "-i", ARCHIVE, timeout=300)
        if r.returncode != 0:
            raise Unavailable(f"docker load: {_err(r)}")
        self.version = f"dockerd {self.dockerd.version()}, {self.dockerd.storage_driver}"

    def env(self) -> dict:
        return self.dockerd.environ()

    def cleanup(self) -> None:
        if self.dockerd is None:
            return
        if self.dockerd.proc is not None and self.dockerd.proc.poll() is None:
            try:
                self.remove_all()
            except (OSError, subprocess.SubprocessError):
                pass
        for p in self.dockerd.cleanup():
            print(f"clean-up of dockerd: {p}", file=sys.stderr)
        for d in self.cgroup_dirs:
            try:
                os.rmdir(d)
            except OSError:
                pass


def _guard(side: Side, fn) -> None:
    if side.error:
        return
    try:
        fn()
    except (Unavailable, OSError, subprocess.SubprocessError) as e:
        side.error = first_line(str(e)) if str(e).strip() else type(e).__name__


def measure(sides: list[Side], rounds: int, warmup: int, crounds: int, n: int, log) -> None:
    for k in range(warmup + rounds):
        log(f"warm-up {k + 1}/{warmup}" if k < warmup else f"round {k - warmup + 1}/{rounds}")
        for i, row in enumerate(ROWS):
            for side in (sides if (k + i) % 2 == 0 else sides[::-1]):
                _guard(side, lambda: side.run_once(row, measured=k >= warmup))
                Reaper.reap()  # shims of removed containers were re-parented to us
    for k in range(1 + crounds) if crounds else ():
        log("concurrent warm-up" if k == 0 else f"concurrent round {k}/{crounds}")
        for side in (sides if k % 2 == 0 else sides[::-1]):
            _guard(side, lambda: side.concurrent_once(n, measured=k > 0))
            Reaper.reap()


def report(sides: list[Side], rows: list[str], args) -> tuple[str, dict]:
    ours = [s for s in sides if s.ours][0]
    peer = [s for s in sides if not s.ours][0]
    data = {"benchmark": "engine", "rounds": args.rounds, "warmup": args.warmup,
            "concurrent_rounds": args.concurrent_rounds, "concurrency": args.concurrency,
            "network": "none", "sides": {}}
    for side in sides:
        data["sides"][side.name] = {"version": side.version, "error": side.error or None, "notes": side.notes,
                                    "results": {row: summary(s) for row, s in side.samples.items()}}
    cells_rows, ratios = comparison_rows(rows, ours, peer)
    data["ratio_ours_over_peer"] = ratios
    lines = [f"docker CLI against each engine, --network none; {args.rounds} rounds after {args.warmup} "
             f"warm-up ({args.concurrent_rounds} for the concurrent row), sides interleaved",
             table(["ms, median / p90", ours.name, peer.name, "ours/peer"], cells_rows)]
    lines += side_lines(sides)
    return "\n".join(lines), data


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="measured rounds (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured rounds first (default 2)")
    parser.add_argument("--concurrent-rounds", type=int, default=3,
                        help="measured rounds of the concurrent start, after one warm-up (default 3; 0 skips it)")
    parser.add_argument("--concurrency", type=int, default=50, help="containers started at once (default 50)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.warmup < 0 or args.concurrent_rounds < 0 or args.concurrency < 1:
        parser.error("--rounds and --concurrency must be at least 1, --warmup and --concurrent-rounds at least 0")

    def body(sides, log):
        measure(sides, args.rounds, args.warmup, args.concurrent_rounds, args.concurrency, log)
        rows = list(ROWS) + ([f"{args.concurrency} x run -d"] if args.concurrent_rounds else [])
        return report(sides, rows, args)
    return drive("bench/engine.py", args.json, lambda: [Ours(), Peer()], body)


def drive(script: str, as_json: bool, make_sides, body) -> int:
    """What the engine benchmarks' mains share: root and the busybox archive checked, the sides
    made and started (one that cannot start is shown unavailable), `body(sides, log)` measuring
    and returning (text, data), and everything cleaned up whatever happens, Ctrl-C included."""
    if os.geteuid() != 0:
        print(f"{script} needs root", file=sys.stderr)
        return 2
    if not os.path.isfile(ARCHIVE):
        print(f"{script}: {ARCHIVE} missing (make fixtures)", file=sys.stderr)
        return 1
    unwind_on_signals()
    log = (lambda msg: None) if as_json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    Reaper()  # shims double-fork away from dockyard-containerd and are re-parented to us
    sides: list[Side] = []
    try:
        sides = make_sides()
        for side in sides:
            _guard(side, side.start)
        text, data = body(sides, log)
    except (KeyboardInterrupt, Interrupted):
        print("interrupted: cleaned up", file=sys.stderr)
        return 130
    finally:
        clean_up_sides(sides)
        Reaper.reap()
    print(json.dumps(data, indent=2) if as_json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
