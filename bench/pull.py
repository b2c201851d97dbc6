"""Image pull: dockyard-containerd beside Debian's dockerd (docker.io 20.10), pulling the same
images from the same private registry in the same run.

    .venv/bin/python bench/pull.py [--rounds N] [--warmup N] [--images busybox,debian,smallfiles] [--json]

Each sample is the wall time of one CLI process pulling one image into an engine that holds
none of it (download, verify, decompress, unpack into its snapshotter / graph driver):
  dockyard-containerd  `dockyard-ctr --address S images pull [--plain-http] REF` against a
                       private dockyard-containerd (own socket, root and state under a temp dir)
  dockerd              `docker pull REF` (the docker CLI on PATH) with DOCKER_HOST at a private
                       dockerd (tests/fixtures/dockerd.py: own data root, exec root, containerd,
                       no networking), overlay2
Between rounds, untimed: ours `images rm --sync REF` (waits for the garbage collection) and a
check that no blob and no snapshot is left; the peer `docker rmi REF` + `docker image prune -af`
and a check that `docker images -qa` is empty; then sync(2), so one side's write-back does not
land in the other's figure. The images (bench/images.py, cached under build/bench-images):
busybox, a Debian bookworm minbase (one ~200 MB layer) and one layer of 50,000 small files, all
pushed with skopeo into a private docker-registry on 127.0.0.1 (plain HTTP).

Rounds interleave the sides and alternate which goes first, per image. Medians, p90 and
median(ours)/median(peer); a side that cannot run here is printed as unavailable with the first
line of its error, never given a figure. Everything is cleaned up at the end, also on Ctrl-C:
both daemons stopped by pid, the registry, mounts under the temp dirs, the temp dirs."""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (REPO, Interrupted, clean_up_sides, comparison_row, first_line, side_lines,  # noqa: E402
                     summary, table, timed, unwind_on_signals)
import images  # noqa: E402
from tests.fixtures.dockerd import DOCKER_CLI, Dockerd, missing_tools  # noqa: E402
from tests.fixtures.host import mounts_under  # noqa: E402

BIN = os.path.join(REPO, ".venv", "bin")
DAEMON, CTR = (os.path.join(BIN, n) for n in ("dockyard-containerd", "dockyard-ctr"))
NAMESPACE = "bench"
PULL_TIMEOUT = 900


class Unavailable(Exception):
    pass


def _err(r: subprocess.CompletedProcess) -> str:
    text = r.stderr if isinstance(r.stderr, str) else (r.stderr or b"").decode(errors="replace")
    return first_line(text) if text.strip() else f"exit {r.returncode}"


class Side:
    name = ""
    ours = False

    def __init__(self):
        self.error = ""
        self.version = ""
        self.samples: dict[str, list[float]] = {}
        self.notes: list[str] = []

    def pull_once(self, image: str, ref: str, measured: bool) -> None:
        argv, env = self.pull_argv(ref)
        ms, r = timed(argv, env=env, stdout=subprocess.DEVNULL, timeout=PULL_TIMEOUT)
        if r.returncode != 0:
            raise Unavailable(f"pull {image}: {_err(r)}")
        if measured:
            self.samples.setdefault(image, []).append(ms)
        self.clear(ref)


class Ours(Side):
    name = "dockyard-containerd"
    ours = True

    def __init__(self, workdir: str):
        super().__init__()
        self.base = os.path.join(workdir, "ours")
        self.address = os.path.join(self.base, "c.sock")
        self.proc = None
        self.log = None
        self.plain_http = False
        self.rm_sync: list[str] = []

    def ctr(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([CTR, "--address", self.address, "--namespace", NAMESPACE, *args],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)

    def start(self) -> None:
        help_ = subprocess.run([CTR, "images", "pull", "--help"], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=60)
        if help_.returncode != 0:
            raise Unavailable("dockyard-ctr has no `images pull` yet")
        self.plain_http = "--plain-http" in help_.stdout
        rm_help = subprocess.run([CTR, "images", "rm", "--help"], stdin=subprocess.DEVNULL,
                                 capture_output=True, text=True, timeout=60)
        self.rm_sync = ["--sync"] if "--sync" in rm_help.stdout else []
        os.makedirs(self.base)
        self.log = open(os.path.join(self.base, "daemon.log"), "w+")
        self.proc = subprocess.Popen([DAEMON, "--address", self.address, "--root", os.path.join(self.base, "root"),
                                      "--state", os.path.join(self.base, "state")], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise Unavailable(f"dockyard-containerd exited: {self._log_tail()}")
            with open(self.log.name, errors="replace") as f:
                if 'msg="serving"' in f.read():
                    break
            if time.monotonic() > deadline:
                raise Unavailable("dockyard-containerd did not come up in 30 s")
            time.sleep(0.05)
        r = self.ctr("version")
        server = r.stdout.partition("Server:")[2].split()  # ["Version:", "<v>", ...]
        self.version = f"dockyard-containerd {server[1]}" if len(server) > 1 else ""

    def _log_tail(self) -> str:
        with open(self.log.name, errors="replace") as f:
            lines = f.read().splitlines()
        errors = [line for line in lines if "level=error" in line or "Error" in line]
        return (errors or lines or ["(nothing logged)"])[-1]

    def pull_argv(self, ref: str):
        return ([CTR, "--address", self.address, "--namespace", NAMESPACE, "images", "pull",
                 *(["--plain-http"] if self.plain_http else []), ref], None)

    def clear(self, ref: str) -> None:
        r = self.ctr("images", "rm", *self.rm_sync, ref)
        if r.returncode != 0:
            raise Unavailable(f"images rm: {_err(r)}")
        blobs = self.ctr("content", "ls", "-q").stdout.split()
        snaps = self.ctr("snapshots", "ls").stdout.splitlines()[1:]
        if blobs or snaps:
            note = f"after `images rm`: {len(blobs)} blob(s), {len(snaps)} snapshot(s) left"
            if note not in self.notes:
                self.notes.append(note)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for target in sorted(mounts_under(self.base), key=len, reverse=True):
            subprocess.run(["umount", "-l", target], capture_output=True)
        if self.log:
            self.log.close()


class Peer(Side):
    name = "dockerd"

    def __init__(self, registry_host: str):
        super().__init__()
        self.dockerd = Dockerd(insecure_registries=[registry_host])

    def start(self) -> None:
        why = missing_tools()
        if why:
            raise Unavailable(why)
        try:
            self.dockerd.start()
        except RuntimeError as e:
            raise Unavailable(str(e)) from None
        self.version = f"dockerd {self.dockerd.version()}, {self.dockerd.storage_driver}"

    def pull_argv(self, ref: str):
        return [DOCKER_CLI, "pull", "--quiet", ref], self.dockerd.environ()

    def clear(self, ref: str) -> None:
        r = self.dockerd.cli("rmi", ref)
        if r.returncode != 0:
            raise Unavailable(f"docker rmi: {_err(r)}")
        r = self.dockerd.cli("image", "prune", "-af")
        if r.returncode != 0:
            raise Unavailable(f"docker image prune: {_err(r)}")
        left = self.dockerd.cli("images", "-qa").stdout.split()
        if left:
            note = f"after rmi + prune: {len(left)} image(s) left"
            if note not in self.notes:
                self.notes.append(note)

    def cleanup(self) -> None:
        for p in self.dockerd.cleanup():
            print(f"clean-up of dockerd: {p}", file=sys.stderr)


def measure(sides: list[Side], refs: dict[str, str], rounds: int, warmup: int, log) -> None:
    for n in range(warmup + rounds):
        log(f"warm-up {n + 1}/{warmup}" if n < warmup else f"round {n - warmup + 1}/{rounds}")
        for i, (image, ref) in enumerate(refs.items()):
            order = sides if (n + i) % 2 == 0 else sides[::-1]
            for side in order:
                if side.error:
                    continue
                try:
                    side.pull_once(image, ref, measured=n >= warmup)
                except (Unavailable, OSError, subprocess.SubprocessError) as e:
                    side.error = first_line(str(e)) if str(e).strip() else type(e).__name__
                os.sync()


def report(sides: list[Side], facts: dict, rounds: int, warmup: int) -> tuple[str, dict]:
    ours = [s for s in sides if s.ours][0]
    peer = [s for s in sides if not s.ours][0]
    data = {"benchmark": "pull", "rounds": rounds, "warmup": warmup, "images": facts, "sides": {}}
    for side in sides:
        data["sides"][side.name] = {"version": side.version, "error": side.error or None,
                                    "notes": side.notes,
                                    "results": {img: summary(s) for img, s in side.samples.items()}}
    rows, ratios = [], {}
    for image, f in facts.items():
        label = (f"{image} ({f['layer_bytes'] / 1e6:.1f} MB gz, {f['unpacked_bytes'] / 1e6:.0f} MB, "
                 f"{f['entries']} entries)")
        cells, ratio = comparison_row(label, ours, peer, image)
        rows.append(cells)
        if ratio is not None:
            ratios[image] = ratio
    data["ratio_ours_over_peer"] = ratios
    lines = [f"image pull, {rounds} rounds after {warmup} warm-up, sides interleaved "
             "(wall ms of one CLI pull into an empty engine)",
             table(["ms, median / p90", ours.name, peer.name, "ours/peer"], rows)]
    lines += side_lines(sides)
    return "\n".join(lines), data


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (default 1)")
    parser.add_argument("--images", default=",".join(images.NAMES),
                        help=f"comma-separated images (default {','.join(images.NAMES)})")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    names = [n for n in args.images.split(",") if n]
    if args.rounds < 1 or args.warmup < 0:
        parser.error("--rounds must be at least 1, --warmup at least 0")
    if not names or any(n not in images.NAMES for n in names):
        parser.error(f"--images: choose from {', '.join(images.NAMES)}")
    if os.geteuid() != 0:
        print("bench/pull.py needs root", file=sys.stderr)
        return 2
    unwind_on_signals()
    log = (lambda msg: None) if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    workdir = tempfile.mkdtemp(prefix="dypl-", dir="/tmp")  # short: unix socket paths
    registry = None
    sides: list[Side] = []
    try:
        facts = {}
        for name in names:
            facts[name] = images.layout_facts(images.layout(name, log=log))
        registry = images.start_registry(os.path.join(workdir, "registry"))
        refs = {name: images.push(name, registry, log=log) for name in names}
        sides = [Ours(workdir), Peer(registry.host)]
        for side in sides:
            try:
                side.start()
            except (Unavailable, OSError, subprocess.SubprocessError) as e:
                side.error = first_line(str(e)) if str(e).strip() else type(e).__name__
        measure(sides, refs, args.rounds, args.warmup, log)
        text, data = report(sides, facts, args.rounds, args.warmup)
    except (KeyboardInterrupt, Interrupted):
        print("interrupted: cleaned up", file=sys.stderr)
        return 130
    except images.BuildError as e:
        print(f"bench/pull.py: {e}", file=sys.stderr)
        return 1
    finally:
        clean_up_sides(sides)
        if registry is not None:
            registry.stop()
        for target in sorted(mounts_under(workdir), key=len, reverse=True):
            subprocess.run(["umount", "-l", target], capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(data, indent=2) if args.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
