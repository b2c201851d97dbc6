"""Dockyard-shim, one process per container, parent and subreaper of its init."""

import sys


def main() -> int:
    # The console script exists so installs are stable across issues; the program is not built yet.
    print("dockyard-shim: not implemented in this release", file=sys.stderr)
    return 2
