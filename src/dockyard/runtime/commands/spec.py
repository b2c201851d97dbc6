"""`spec`: write a starter config.json into the bundle directory."""

import json
import os

from dockyard.errors import Conflict


def configure(p):
    p.add_argument("--bundle", "-b", default=".", help="path to the root of the bundle directory")
    p.add_argument("--rootless", action="store_true", help="generate a configuration for a rootless container")


def run(args) -> int:
    from dockyard.oci.defaults import default_spec
    path = os.path.join(args.bundle, "config.json")
    if os.path.exists(path):
        raise Conflict("File config.json exists. Remove it first")
    with open(path, "w") as f:
        json.dump(default_spec(rootless=args.rootless), f, indent="\t")
        f.write("\n")
    return 0
