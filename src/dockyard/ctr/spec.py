"""The OCI runtime spec of a container run from a plain directory (`run --rootfs DIR`),
built as ctr builds its default spec (containerd oci.populateDefaultUnixSpec, then
WithRootFSPath): the root is the directory itself, by absolute path and writable, there is no
snapshot, and the cgroup is /<namespace>/<id>. Pure."""

import os

from dockyard.oci import defaults

SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
PROCESS_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"


def rootfs_spec(namespace: str, container_id: str, rootfs: str, args: list[str], terminal: bool,
                cwd: str = "/", env: list[str] = ()) -> dict:
    spec = defaults.default_spec(args or ["sh"])
    caps = list(defaults.DOCKER_DEFAULT_CAPABILITIES)
    process = spec["process"]
    process["terminal"] = terminal
    process["cwd"] = cwd
    process["env"] = [defaults.DEFAULT_PATH_ENV] + (["TERM=xterm"] if terminal else []) + list(env)
    process["capabilities"] = {k: list(caps) for k in ("bounding", "effective", "permitted")}
    spec["root"] = {"path": os.path.abspath(rootfs), "readonly": False}
    spec["hostname"] = container_id
    linux = spec["linux"]
    linux["cgroupsPath"] = f"/{namespace}/{container_id}"
    linux["maskedPaths"] = list(defaults.DOCKER_MASKED_PATHS)
    linux["readonlyPaths"] = list(defaults.DOCKER_READONLY_PATHS)
    return spec


def exec_process(spec: dict, args: list[str], terminal: bool, cwd: str | None = None) -> dict:
    """The process of `tasks exec`: the container's own process with other args (ctr's way)."""
    process = dict(spec.get("process") or {})
    process["args"] = list(args)
    process["terminal"] = terminal
    if cwd:
        process["cwd"] = cwd
    process.pop("consoleSize", None)
    return process
