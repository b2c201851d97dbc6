"""Dockyard-containerd, the lifecycle manager (containers, tasks, content, snapshots)."""

import sys


def main() -> int:
    # The console script exists so installs are stable across issues; the program is not built yet.
    print("dockyard-containerd: not implemented in this release", file=sys.stderr)
    return 2
