"""`features`: what this runtime implements, as runtime-spec features.md describes."""

import json

from dockyard.linux import mount as mnt
from dockyard.linux.namespaces import NAMESPACES


def features() -> dict:
    from dockyard.linux import capabilities
    from .. import seccomp
    options = sorted(set(mnt.FLAG_OPTIONS) | set(mnt.PROPAGATION_OPTIONS) | mnt.RECURSIVE_ATTRS | {"tmpcopyup"})
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": options,
        "linux": {
            "namespaces": sorted(NAMESPACES),
            "capabilities": sorted(capabilities.NUMBERS, key=capabilities.NUMBERS.get),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False, "rdma": False},
            "seccomp": seccomp.features(),
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": False}},
        },
        "annotations": {"org.opencontainers.runtime.name": "dockyard-runc"},
    }


def configure(p):
    pass


def run(args) -> int:
    print(json.dumps(features(), indent=4))
    return 0
