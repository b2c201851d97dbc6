"""Memory of an idle container's shim: dockyard-shim beside Debian's containerd-shim-runc-v2,
measured in the same run, RSS and PSS from /proc/<pid>/smaps_rollup.

    .venv/bin/python bench/shim_memory.py [--count N] [--settle S] [--json]

Each side runs N containers of `sleep` from the busybox fixture (default 3, so PSS shows what
shims share with one another: PSS divides a shared page among the processes mapping it):
  dockyard-shim            `dockyard-shim start` + create + start, with dockyard-runc, a json-file
                           log; measured after the shim has been idle for --settle seconds
  containerd-shim-runc-v2  a private containerd (tests/runtime/containerd_peer.py) and
                           `ctr run -d` of the busybox image with runc; the shim process is found
                           by our containerd's address in its command line
The table shows the median per shim and the ratio ours/peer. A peer that cannot run here is
printed as unavailable with its reason, never given a figure. Everything is cleaned up at the
end, also on Ctrl-C: containers, shims (by pid), cgroups, temp dirs."""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO, Interrupted, Reaper, first_line, remove_cgroup_tree, table, unwind_on_signals  # noqa: E402
from tests.fixtures import busybox  # noqa: E402
from tests.fixtures.host import processes  # noqa: E402

sys.path.insert(0, os.path.join(REPO, "tests", "runtime"))
from containerd_peer import Containerd, missing_tools  # noqa: E402

SHIM = os.path.join(REPO, ".venv", "bin", "dockyard-shim")
IMAGE = "docker.io/library/busybox:latest"
CGROUP_TOP = "/dockyard-bench"


def smaps_rollup(pid: int) -> dict:
    """RSS and PSS in kB."""
    values = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss", "Pss_Anon", "Pss_File"):
                values[key] = int(rest.split()[0])
    return values


def ours(workdir: str, count: int, settle: float) -> list[dict]:
    from dockyard.shim.client import ShimClient
    cgroup_parent = f"{CGROUP_TOP}/{os.getpid()}"
    rootfs = str(busybox.build_rootfs(os.path.join(workdir, "rootfs")))
    state, runc_root = os.path.join(workdir, "state"), os.path.join(workdir, "runc")
    shims = []
    try:
        for i in range(count):
            cid = f"bench-{i}"
            bundle = os.path.join(workdir, f"bundle-{i}")
            os.makedirs(bundle)
            shutil.copytree(rootfs, os.path.join(bundle, "rootfs"), symlinks=True)
            config = busybox.default_spec(["sleep", "100000"])
            config["process"]["terminal"] = False
            config["root"]["readonly"] = False
            config["linux"]["cgroupsPath"] = f"{cgroup_parent}/{uuid.uuid4().hex[:12]}"
            with open(os.path.join(bundle, "config.json"), "w") as f:
                json.dump(config, f)
            r = subprocess.run([SHIM, "start", "--namespace", "bench", "--id", cid, "--bundle", bundle,
                                "--state-dir", state, "--runtime-root", runc_root,
                                "--log-path", os.path.join(workdir, f"{cid}-json.log")],
                               capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                raise RuntimeError(f"dockyard-shim start: {first_line(r.stderr)}")
            sock = r.stdout.strip()
            with open(os.path.join(os.path.dirname(sock), "shim.pid")) as f:
                pid = int(f.read())
            shims.append((sock, pid))
            with ShimClient(sock, timeout=60) as c:
                c.create()
                c.start()
        time.sleep(settle)
        return [smaps_rollup(pid) for _, pid in shims]
    finally:
        for sock, pid in shims:
            try:
                with ShimClient(sock, timeout=30) as c:
                    if c.state()["status"] != "stopped":
                        c.kill(signal.SIGKILL)
                    c.wait()
                    c.delete()
                    c.shutdown()
            except Exception:  # noqa: BLE001 - clean up whatever state it is in
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _reap(pid)
        for cid in (f"bench-{i}" for i in range(count)):
            if os.path.exists(os.path.join(runc_root, cid)):
                subprocess.run([os.path.join(REPO, ".venv", "bin", "dockyard-runc"), "--root", runc_root,
                                "delete", "--force", cid], capture_output=True)
        remove_cgroup_tree(cgroup_parent)
        remove_cgroup_tree(CGROUP_TOP, only_if_empty=True)


def _reap(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            return
        time.sleep(0.02)


def _reap_all(timeout: float = 5) -> None:
    """Reap every child left: as the subreaper we inherit both sides' shims and, from a shim
    killed by clean-up, its container's init. Only called when no subprocess of ours runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.05)


def peer(workdir: str, count: int, settle: float) -> list[dict]:
    why = missing_tools()
    if why:
        raise RuntimeError(why)
    ctd = Containerd()
    try:
        ctd.start()
        archive = os.path.join(ctd.base, "busybox.docker.tar")
        busybox.build_docker_archive(archive)
        ctd.ok("images", "import", archive, timeout=120)
        for _ in range(count):
            cid = ctd.new_id("bench")
            r = ctd.ctr("run", "-d", "--fifo-dir", ctd.fifo_dir, IMAGE, cid, "sleep", "100000", timeout=60)
            if r.returncode != 0:
                raise RuntimeError(f"ctr run -d: {first_line(r.stderr.decode(errors='replace'))}")
            ctd.wait_status(cid, "RUNNING")
        time.sleep(settle)
        pids = [pid for pid, argv in processes()
                if argv and os.path.basename(argv[0]) == "containerd-shim-runc-v2" and ctd.address in argv]
        if len(pids) != count:
            raise RuntimeError(f"found {len(pids)} containerd-shim-runc-v2 processes for {count} containers")
        return [smaps_rollup(pid) for pid in pids]
    finally:
        ctd.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=3, help="idle containers (shims) per side")
    parser.add_argument("--settle", type=float, default=1.0, help="idle seconds before measuring")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/shim_memory.py needs root", file=sys.stderr)
        return 1
    unwind_on_signals()
    Reaper()  # our shims re-parent to us after their double fork: reap them here
    results = {}
    workdir = tempfile.mkdtemp(prefix="dyshm-", dir="/tmp")
    try:
        for name, measure in (("dockyard-shim", ours), ("containerd-shim-runc-v2", peer)):
            try:
                results[name] = {"samples": measure(os.path.join(workdir, name.split("-")[0]) if name == "dockyard-shim"
                                                    else workdir, args.count, args.settle)}
            except (RuntimeError, OSError, AssertionError, subprocess.SubprocessError) as e:
                results[name] = {"error": str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}
    except (KeyboardInterrupt, Interrupted):
        print("interrupted: cleaned up", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        _reap_all()
    for r in results.values():
        if "samples" in r:
            for key in ("Rss", "Pss", "Pss_Anon", "Pss_File"):
                r[key] = statistics.median(s[key] for s in r["samples"])
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"idle shim memory, median of {args.count} shims per side, kB (from /proc/PID/smaps_rollup)")
    rows = []
    for name, r in results.items():
        if "error" in r:
            rows.append([name, f"unavailable ({r['error']})"])
        else:
            rows.append([name, *(f"{r[k]:.0f}" for k in ("Rss", "Pss", "Pss_Anon", "Pss_File"))])
    a, b = results.get("dockyard-shim", {}), results.get("containerd-shim-runc-v2", {})
    if "Rss" in a and "Rss" in b:
        rows.append(["ratio ours/peer", *(f"{a[k] / b[k]:.2f}x" for k in ("Rss", "Pss", "Pss_Anon", "Pss_File"))])
    print(table(["shim", "RSS", "PSS", "PSS anon", "PSS file"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
