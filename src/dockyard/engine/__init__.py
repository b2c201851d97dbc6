"""Dockyardd, the Docker Engine API server; arrives with the engine issue."""

import sys


def main() -> int:
    # The console script exists so installs are stable across issues; the program is not built yet.
    print("dockyardd: not implemented in this release", file=sys.stderr)
    return 2
