"""dockyard-runc beside runc and crun: the time to create, start, wait for and delete a container
running `true` from the busybox bundle, as a caller of the runtime CLI (a shim) sees it.

    .venv/bin/python bench/runtime.py [--rounds N] [--warmup N] [--json]

Rows (wall time in ms of the runtime processes, spawned from here):
  lifecycle   `create` + `start` + `state` polled until "stopped" + `delete`, one process each;
              the steps are also shown one by one
  run         `run --bundle B ID`: the same in one process (foreground, deletes on exit)
  --version   one process that does no container work: the floor every verb pays

Runtimes are interleaved round by round (the starting runtime rotates) so machine noise falls on
all alike; the same bundle serves all, each runtime has its own --root, every container its own id
and its own cgroup /dockyard-bench/<pid>/<id>. `dockyard-runc+pyc` is ours with a warm bytecode
cache (PYTHONPYCACHEPREFIX in the benchmark's temp dir, filled during warm-up), whatever the
checkout holds; plain `dockyard-runc` runs with the environment as it is. Everything is cleaned up
at the end, also on Ctrl-C: containers (delete --force), cgroups in every hierarchy, temp dirs."""

import argparse
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (REPO, Interrupted, Reaper, Runtime, first_line, fmt_ms,  # noqa: E402
                     median, ours_binary, p90, peers, remove_cgroup_tree, summary, table,
                     timed, unwind_on_signals, version_line)
from tests.fixtures import busybox  # noqa: E402

# crun 1.8.1 refuses the 1.2.0 that default_spec writes; runc 1.1 and dockyard-runc take 1.0.2.
OCI_VERSION = "1.0.2"
CGROUP_TOP = "/dockyard-bench"
WAIT_LIMIT_S = 30.0
STEPS = ("create", "start", "wait", "delete")


class BenchError(Exception):
    pass


class Bench:
    def __init__(self, workdir: str, runtimes: list[Runtime]):
        self.workdir = workdir
        self.runtimes = runtimes
        self.cgroup_parent = f"{CGROUP_TOP}/{os.getpid()}"
        self.bundle = str(busybox.build_bundle(os.path.join(workdir, "bundle"), args=["true"],
                                               ociVersion=OCI_VERSION))
        self.config_path = os.path.join(self.bundle, "config.json")
        with open(self.config_path) as f:
            self.config = json.load(f)
        self.stderr = open(os.path.join(workdir, "stderr"), "w+")
        self.live: dict[str, set[str]] = {rt.name: set() for rt in runtimes}
        self.serial = 0
        self.reaper = Reaper()
        for rt in runtimes:
            rt.root = os.path.join(workdir, "root", rt.name)
            os.makedirs(rt.root)

    # -- one container ------------------------------------------------------------------------

    def _new_container(self, rt: Runtime, kind: str) -> str:
        """A fresh id, with its own cgroupsPath written into the shared bundle (not timed)."""
        self.serial += 1
        cid = f"bench-{os.getpid()}-{self.serial}-{kind}"
        self.config["linux"]["cgroupsPath"] = f"{self.cgroup_parent}/{cid}"
        with open(self.config_path, "w") as f:
            json.dump(self.config, f, indent=2)
        self.live[rt.name].add(cid)
        return cid

    def _call(self, rt: Runtime, *args: str, stdout=subprocess.DEVNULL):
        """One timed runtime command. stderr goes to a file, not a pipe: after `create` the
        container holds the runtime's stdio, and a pipe would not reach EOF until it exits."""
        self.stderr.seek(0)
        self.stderr.truncate()
        ms, proc = timed(rt.argv(*args), env=rt.environ(), stdout=stdout, stderr=self.stderr)
        if proc.returncode != 0:
            self.stderr.seek(0)
            raise BenchError(f"{rt.name} {args[0]}: exit {proc.returncode}: "
                             f"{first_line(self.stderr.read())}")
        return ms, proc

    def lifecycle(self, rt: Runtime) -> dict:
        cid = self._new_container(rt, "l")
        times = {"create": self._call(rt, "create", "--bundle", self.bundle, cid)[0],
                 "start": self._call(rt, "start", cid)[0], "wait": 0.0, "polls": 0}
        deadline = time.monotonic() + WAIT_LIMIT_S
        while True:
            ms, proc = self._call(rt, "state", cid, stdout=subprocess.PIPE)
            times["wait"] += ms
            times["polls"] += 1
            if json.loads(proc.stdout)["status"] == "stopped":
                break
            if time.monotonic() > deadline:
                raise BenchError(f"{rt.name}: {cid} not stopped after {WAIT_LIMIT_S:.0f}s")
        times["delete"] = self._call(rt, "delete", cid)[0]
        self.live[rt.name].discard(cid)
        self.reaper.reap()
        times["lifecycle"] = sum(times[s] for s in STEPS)
        return times

    def run(self, rt: Runtime) -> float:
        cid = self._new_container(rt, "r")
        ms = self._call(rt, "run", "--bundle", self.bundle, cid)[0]
        self.live[rt.name].discard(cid)
        self.reaper.reap()
        return ms

    def version(self, rt: Runtime) -> float:
        ms, proc = timed([rt.binary, "--version"], env=rt.environ())
        if proc.returncode != 0:
            raise BenchError(f"{rt.name} --version: {first_line(proc.stderr.decode())}")
        return ms

    # -- whole benchmark ----------------------------------------------------------------------

    def probe(self) -> None:
        """One lifecycle and one run each; a runtime that fails is marked unavailable."""
        for rt in self.runtimes:
            if rt.error:
                continue
            try:
                self.lifecycle(rt)
                self.run(rt)
            except (BenchError, OSError, subprocess.TimeoutExpired) as e:
                rt.error = str(e).split(": ", 2)[-1] if isinstance(e, BenchError) else str(e)

    def measure(self, rounds: int, warmup: int, progress) -> dict:
        ready = [rt for rt in self.runtimes if not rt.error]
        results = {rt.name: {k: [] for k in (*STEPS, "polls", "lifecycle", "run", "--version")}
                   for rt in ready}
        for n in range(warmup + rounds):
            progress(n, warmup, rounds)
            shift = n % len(ready)
            for rt in ready[shift:] + ready[:shift]:
                times = self.lifecycle(rt)
                times["run"] = self.run(rt)
                times["--version"] = self.version(rt)
                if n >= warmup:
                    for key, value in times.items():
                        results[rt.name][key].append(value)
        return results

    def interpreter_floor(self, rounds: int) -> list[float]:
        """The venv's bare interpreter start: what no Python CLI can get under."""
        py = os.path.join(REPO, ".venv", "bin", "python")
        return [timed([py, "-c", "pass"])[0] for _ in range(rounds)]

    def cleanup(self) -> list[str]:
        problems = []
        for rt in self.runtimes:
            ids = set(self.live.get(rt.name, ()))
            if os.path.isdir(rt.root):
                ids |= {d for d in os.listdir(rt.root) if os.path.isdir(os.path.join(rt.root, d))}
            for cid in sorted(ids):
                proc = subprocess.run(rt.argv("delete", "--force", cid), stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      timeout=60, env=rt.environ())
                if proc.returncode != 0 and os.path.isdir(os.path.join(rt.root, cid)):
                    problems.append(f"{rt.name} delete --force {cid}: "
                                    f"{first_line(proc.stderr.decode())}")
        self.reaper.reap()
        problems += remove_cgroup_tree(self.cgroup_parent)
        remove_cgroup_tree(CGROUP_TOP, only_if_empty=True)  # shared with concurrent runs
        self.stderr.close()
        return problems


def bytecode_state() -> str:
    """How many of dockyard's modules have an up-to-date .pyc beside them (what `as is` runs)."""
    src = os.path.join(REPO, "src", "dockyard")
    total = cached = 0
    for dirpath, _, files in os.walk(src):
        for name in files:
            if name.endswith(".py"):
                total += 1
                path = os.path.join(dirpath, name)
                pyc = importlib.util.cache_from_source(path)
                if os.path.exists(pyc) and os.path.getmtime(pyc) >= os.path.getmtime(path):
                    cached += 1
    flag = os.environ.get("PYTHONDONTWRITEBYTECODE")
    return (f"{cached} of {total} modules in src/dockyard have bytecode beside them"
            f"{'; PYTHONDONTWRITEBYTECODE=' + flag if flag else ''}")


ROWS = (("lifecycle", "lifecycle (create+start+wait+delete)"), ("create", "  create"),
        ("start", "  start"), ("wait", "  wait: state until stopped"), ("delete", "  delete"),
        ("run", "run"), ("--version", "--version (process floor)"))


def report(runtimes, results, rounds, warmup, interp, host) -> tuple[str, dict]:
    ready = [rt for rt in runtimes if not rt.error]
    ours = [rt for rt in ready if rt.ours]
    theirs = [rt for rt in ready if not rt.ours]
    rows = []
    for key, label in ROWS:
        rows.append([label] + [f"{fmt_ms(median(results[rt.name][key]))} / "
                               f"{fmt_ms(p90(results[rt.name][key]))}" for rt in ready])
    lines = [f"dockyard-runc vs peers: `true` in the busybox bundle, {rounds} rounds after "
             f"{warmup} warm-up, runtimes interleaved",
             f"host: {host['kernel']}, {host['cpus']} CPUs, python {host['python']}; "
             f"{host['bytecode']}",
             "",
             table(["ms: median / p90"] + [rt.name for rt in ready], rows)]
    polls = {rt.name: median(results[rt.name]["polls"]) for rt in ready}
    lines.append("state polls until stopped (median): "
                 + ", ".join(f"{name} {value:g}" for name, value in polls.items()))
    ratios = {}
    if ours and theirs:
        ratio_rows = []
        for key, label in ROWS:
            row = [label]
            for o in ours:
                for t in theirs:
                    r = median(results[o.name][key]) / median(results[t.name][key])
                    ratios.setdefault(f"{o.name}/{t.name}", {})[key] = round(r, 2)
                    row.append(f"{r:.1f}x")
            ratio_rows.append(row)
        lines += ["", table(["ratio of medians"] + [f"{o.name}/{t.name}" for o in ours
                                                    for t in theirs], ratio_rows)]
    lines.append("")
    lines.append(f"bare interpreter (.venv/bin/python -c pass): {fmt_ms(median(interp))} ms median;"
                 " the rest of `dockyard-runc --version` is imports and parser set-up")
    for rt in runtimes:
        lines.append(f"{rt.name}: unavailable ({rt.error})" if rt.error
                     else f"{rt.name}: {rt.binary}, {rt.version}")
    data = {
        "benchmark": "runtime",
        "workload": "true in the busybox bundle",
        "rounds": rounds, "warmup": warmup, "host": host,
        "runtimes": {rt.name: {"binary": rt.binary, "version": rt.version, "env": rt.env,
                               "available": not rt.error, "error": rt.error or None,
                               "results": {k: summary(v) for k, v in results.get(rt.name, {}).items()}}
                     for rt in runtimes},
        "ratios": ratios,
        "interpreter_ms": summary(interp),
    }
    return "\n".join(lines), data


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="measured rounds (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured rounds first (default 3)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.warmup < 0:
        parser.error("--rounds must be at least 1, --warmup at least 0")
    if os.geteuid() != 0:
        print("bench/runtime.py: needs root (namespaces, mounts, cgroups)", file=sys.stderr)
        return 2

    unwind_on_signals()
    workdir = tempfile.mkdtemp(prefix="dockyard-bench-")
    pycache = os.path.join(workdir, "pycache")
    runtimes = [Runtime("dockyard-runc", ours_binary(), ours=True),
                Runtime("dockyard-runc+pyc", ours_binary(), ours=True,
                        env={"PYTHONPYCACHEPREFIX": pycache, "PYTHONDONTWRITEBYTECODE": None}),
                *peers()]
    for rt in runtimes:
        rt.version = version_line(rt.binary) if not rt.error else ""
    log = (lambda *a: None) if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    bench = None
    try:
        bench = Bench(workdir, runtimes)
        bench.probe()
        if not any(rt.ours and not rt.error for rt in runtimes):
            print(f"dockyard-runc does not work here: {runtimes[0].error}", file=sys.stderr)
            return 1

        def progress(n, warmup, rounds):
            if n < warmup:
                log(f"warm-up {n + 1}/{warmup}")
            elif (n - warmup) % 5 == 0:
                log(f"round {n - warmup + 1}/{rounds}")

        results = bench.measure(args.rounds, args.warmup, progress)
        interp = bench.interpreter_floor(args.rounds)
        host = {"kernel": f"Linux {platform.release()}", "cpus": os.cpu_count(),
                "python": platform.python_version(), "bytecode": bytecode_state()}
        text, data = report(runtimes, results, args.rounds, args.warmup, interp, host)
        print(json.dumps(data, indent=2) if args.json else text)
        return 0
    except (KeyboardInterrupt, Interrupted) as e:
        print(f"\ninterrupted{f' ({e})' if str(e) else ''}; cleaning up", file=sys.stderr)
        return 130
    except BenchError as e:
        print(f"bench/runtime.py: {e}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip clean-up
        problems = bench.cleanup() if bench else []
        shutil.rmtree(workdir, onerror=lambda _f, path, exc: problems.append(f"{path}: {exc[1]}"))
        for p in problems:
            print(f"clean-up: {p}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
