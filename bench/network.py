"""Container networking: dockyardd beside Debian's dockerd (docker.io 20.10), both with bridge
networking, both driven by the same docker CLI (/usr/local/bin/docker) in the same run.

    .venv/bin/python bench/network.py [--rounds N] [--warmup N] [--mib N] [--json]

Rows (wall ms):
  run --rm true     `docker run --rm --network bridge busybox true` as the CLI's caller sees it:
                    engine.py's row, plus what the default bridge costs (a netns, a veth pair on
                    the bridge, an address, the firewall, and all of it undone at the exit)
  tcp N MiB         container to container on one user-defined network: a server container
                    `nc -l -p 5001 | wc -c`, then a client container on the same network sending
                    `dd if=/dev/zero bs=1M count=N | nc <server ip> 5001` (busybox nc, which
                    exits once the server has closed, i.e. has read everything). Timed inside the
                    client with `adjtimex` (microseconds; busybox's date has no %N), so container
                    start-up is not in it; the server's count is checked against N MiB. Printed
                    also as MB/s (10^6 bytes/s) at the median time.
  dockyardd         a private dockyardd (tests/engine/conftest.py Engine: own socket, roots,
                    cgroup parent, dockyard-containerd, its own --bridge/--bip/--default-address-pool
                    and nft table), busybox loaded with `dockyard-ctr images load`
  dockerd           a private dockerd (tests/fixtures/dockerd.py with network=True): bridge
                    networking, iptables on, inside a network namespace of its own (with its
                    containerd), so docker0, its veths and iptables rules never reach the host

Rounds interleave the sides and alternate which goes first. Medians, p90 and
median(ours)/median(peer) of the times; a side that cannot run here is printed as unavailable with
the first line of its error, never given a figure. Everything is cleaned up at the end, also on
Ctrl-C: containers and the benchmark's network removed through each engine, then both daemons (and
their containerds and shims) stopped by pid, mounts, cgroups and temp dirs removed; the peer's
network namespace goes with its processes."""

import argparse
import os
import subprocess
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Reaper, comparison_rows, first_line, median, side_lines, summary, table, timed  # noqa: E402
from engine import (ARCHIVE, DOCKER, IMAGE, RUN_TIMEOUT, Ours, Peer, Unavailable, _err,  # noqa: E402
                    _guard, drive)
from tests.fixtures.dockerd import Dockerd, missing_tools  # noqa: E402

RUN_ROW = "run --rm true"
PORT = 5001
# The server's stdin is a FIFO it holds open itself: busybox nc stops at EOF on either side, and
# with /dev/null as stdin it would half-close and the client would stop before sending anything.
SERVER = f"mkfifo /tmp/in && nc -l -p {PORT} <>/tmp/in | wc -c"
# $1 server ip, $2 MiB. A refused connect (the server not listening yet) is retried, the clock
# restarted; success means the server read up to EOF and closed. Prints "sec usec" twice.
CLIENT = f"""n=0
until adjtimex >/tmp/t0 && dd if=/dev/zero bs=1M count="$2" 2>/dev/null | nc "$1" {PORT}; do
  n=$((n + 1)); [ "$n" -lt 100 ] || exit 1; usleep 20000
done
adjtimex >/tmp/t1
cat /tmp/t0 /tmp/t1 | awk '/tv_sec/ {{ printf "%s ", $2 }} /tv_usec/ {{ print $2 }}'"""


def tcp_row(mib: int) -> str:
    return f"tcp {mib} MiB"


class NetSide:
    """The network rows, mixed into engine.py's Ours and Peer (daemon start-up and clean-up)."""

    network = ""  # the user-defined network of the throughput row, once made

    def prepare(self) -> None:
        name = "dybench-" + uuid.uuid4().hex[:8]
        r = self.cli("network", "create", name)
        if r.returncode != 0:
            raise Unavailable(f"network create: {_err(r)}")
        self.network = name

    def run_once(self, row: str, measured: bool) -> None:
        ms, r = timed([DOCKER, "run", "--rm", "--network", "bridge", IMAGE, "true"],
                      env=self.env(), timeout=RUN_TIMEOUT)
        if r.returncode != 0:
            raise Unavailable(f"{row}: {_err(r)}")
        if measured:
            self.samples.setdefault(row, []).append(ms)

    def tcp_once(self, mib: int, measured: bool) -> None:
        server = "dybench-srv-" + uuid.uuid4().hex[:8]
        r = self.cli("run", "-d", "--network", self.network, "--name", server, IMAGE, "sh", "-c", SERVER)
        try:
            if r.returncode != 0:
                raise Unavailable(f"server container: {_err(r)}")
            r = self.cli("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", server)
            ip = r.stdout.strip()
            if r.returncode != 0 or not ip:
                raise Unavailable(f"server address: {_err(r) if r.returncode else 'none in inspect'}")
            client = self.cli("run", "--rm", "--network", self.network, IMAGE,
                              "sh", "-c", CLIENT, "sh", ip, str(mib))
            if client.returncode != 0:
                raise Unavailable(f"client container: {_err(client)}")
            self.cli("wait", server)
            received = self.cli("logs", server).stdout.strip()
            if received != str(mib << 20):
                raise Unavailable(f"the server received {received or 'nothing'} of {mib << 20} bytes")
            try:
                (s0, u0), (s1, u1) = (map(int, line.split()) for line in client.stdout.split("\n") if line.strip())
            except ValueError:
                raise Unavailable(f"client timestamps: {client.stdout.strip()!r}") from None
            if measured:
                self.samples.setdefault(tcp_row(mib), []).append(((s1 - s0) * 1e6 + (u1 - u0)) / 1e3)
        finally:
            self.cli("rm", "-f", server)

    def cleanup(self) -> None:
        if self.network:
            try:
                self.remove_all()
                r = self.cli("network", "rm", self.network, timeout=60)
                if r.returncode != 0:
                    self.note(f"network rm {self.network}: {_err(r)}")
            except (OSError, subprocess.SubprocessError):
                pass  # the daemon is gone; its own clean-up removes what is left
        super().cleanup()


class NetOurs(NetSide, Ours):
    pass


class NetPeer(NetSide, Peer):
    def start(self) -> None:
        why = missing_tools()
        if why:
            raise Unavailable(why)
        self.dockerd = Dockerd(network=True)
        try:
            self.dockerd.start()
        except RuntimeError as e:
            raise Unavailable(first_line(str(e))) from None
        r = self.cli("load", "-i", ARCHIVE, timeout=300)
        if r.returncode != 0:
            raise Unavailable(f"docker load: {_err(r)}")
        self.version = (f"dockerd {self.dockerd.version()}, {self.dockerd.storage_driver}, "
                        f"bridge networking and iptables in a private network namespace")


def measure(sides: list, rounds: int, warmup: int, mib: int, log) -> None:
    for k in range(warmup + rounds):
        log(f"warm-up {k + 1}/{warmup}" if k < warmup else f"round {k - warmup + 1}/{rounds}")
        for i, once in enumerate((lambda s: s.run_once(RUN_ROW, k >= warmup),
                                  lambda s: s.tcp_once(mib, k >= warmup))):
            for side in (sides if (k + i) % 2 == 0 else sides[::-1]):
                _guard(side, lambda: once(side))
                Reaper.reap()  # shims of removed containers were re-parented to us


def mb_per_s(side, mib: int) -> float | None:
    s = side.samples.get(tcp_row(mib))
    return (mib << 20) / 1e6 / (median(s) / 1e3) if s and not side.error else None


def report(sides: list, args) -> tuple[str, dict]:
    ours = [s for s in sides if s.ours][0]
    peer = [s for s in sides if not s.ours][0]
    rows = [RUN_ROW, tcp_row(args.mib)]
    data = {"benchmark": "network", "rounds": args.rounds, "warmup": args.warmup, "mib": args.mib, "sides": {}}
    for side in sides:
        data["sides"][side.name] = {"version": side.version, "error": side.error or None, "notes": side.notes,
                                    "results": {row: summary(s) for row, s in side.samples.items()},
                                    "tcp_mb_per_s": mb_per_s(side, args.mib)}
    cells_rows, ratios = comparison_rows(rows, ours, peer)
    data["ratio_ours_over_peer"] = ratios
    rates = [mb_per_s(side, args.mib) for side in (ours, peer)]
    cells_rows.append(["tcp MB/s at the median"] + [f"{r:.0f}" if r else "-" for r in rates]
                      + [f"{rates[0] / rates[1]:.2f}x" if all(rates) else "-"])
    lines = [f"docker CLI against each engine, bridge networking; {args.rounds} rounds after {args.warmup} "
             f"warm-up, sides interleaved",
             table(["ms, median / p90", ours.name, peer.name, "ours/peer"], cells_rows),
             "(times: lower is better; the MB/s row: higher is better)"]
    lines += side_lines(sides)
    return "\n".join(lines), data


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="measured rounds (default 10)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (default 1)")
    parser.add_argument("--mib", type=int, default=512, help="MiB sent container to container (default 512)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.warmup < 0 or args.mib < 1:
        parser.error("--rounds and --mib must be at least 1, --warmup at least 0")

    def body(sides, log):
        for side in sides:
            _guard(side, side.prepare)
        measure(sides, args.rounds, args.warmup, args.mib, log)
        return report(sides, args)
    return drive("bench/network.py", args.json, lambda: [NetOurs(), NetPeer()], body)


if __name__ == "__main__":
    sys.exit(main())
