"""The `options` of Tasks.Create, as its clients build them and the task manager reads them:
JSON in an Any, since the keys are ours. Its own light module (json and protobuf's Any only), so
dockyard-ctr and dockyardd build options without loading the daemon's task manager."""

import json

from google.protobuf import any_pb2

from dockyard.errors import InvalidArgument

CREATE_OPTIONS_TYPE = "types.dockyard.dev/tasks/CreateOptions"  # JSON in value


def create_options(rootfs: str = "", stdin: bool = False, log_max_size: int = -1,
                   log_max_file: int = 1, log_path: str = "") -> any_pb2.Any:
    """The `options` of CreateTaskRequest: `rootfs` a plain directory bound on the bundle's
    rootfs (when no mounts are given and the container has no snapshot), `stdin` keep the
    process's stdin open for attach, the json-file log's rotation, and `log_path` where the
    log is written instead of the bundle's json.log: an absolute path in an existing directory,
    outside the bundle so it outlives the task (dockyardd keeps <container dir>/<id>-json.log,
    appended to across restarts, as dockerd does)."""
    opts = {"rootfs": rootfs, "stdin": stdin, "log_max_size": log_max_size, "log_max_file": log_max_file}
    if log_path:
        opts["log_path"] = log_path
    return any_pb2.Any(type_url=CREATE_OPTIONS_TYPE, value=json.dumps(opts).encode())


def parse_create_options(options: any_pb2.Any | None) -> dict:
    if options is None or not options.type_url:
        return {}
    if options.type_url != CREATE_OPTIONS_TYPE:
        raise InvalidArgument(f"unknown task options type {options.type_url!r} (want {CREATE_OPTIONS_TYPE})")
    try:
        opts = json.loads(options.value or b"{}")
    except ValueError as e:
        raise InvalidArgument(f"task options: {e}") from None
    if not isinstance(opts, dict):
        raise InvalidArgument("task options must be a JSON object")
    return opts
