"""`run [--rm] [-d] [-t] [--runtime PATH] (--rootfs DIR | IMAGE) ID [CMD...]`, as ctr's `run`:
the container record (Containers), its task created and started (Tasks), the output shown
through Tasks.Attach, and our exit status the task's. `--rm` deletes the task and the container
afterwards (and its snapshot), `-d` returns once the task has started.

From an image (pulled, loaded or imported, so unpacked): a snapshot keyed by the container id
is prepared on the image's top layer (its chain id), as ctr's WithNewSnapshot, and the process
comes from the image config as ctr's WithImageConfig takes it: Entrypoint + (CMD... or Cmd),
Env, WorkingDir, and a numeric User."""

import argparse
import contextlib
import json
import os

from google.protobuf import any_pb2

from dockyard.api.services.containers.v1 import containers_pb2 as containers_pb
from dockyard.api.services.tasks.v1 import tasks_pb2 as pb
from dockyard.containerd.taskoptions import create_options
from dockyard.errors import DockyardError, InvalidArgument, Unsupported

from .. import attach
from .. import spec as specs
from . import containers, images, tasks

DEFAULT_RUNTIME = "dockyard-runc"
SNAPSHOTTER = "overlayfs"


def _merge_env(base: list[str], extra: list[str]) -> list[str]:
    """`extra` over `base`: a variable set in both takes extra's value, in base's place."""
    out = list(base)
    keys = [e.partition("=")[0] for e in out]
    for e in extra:
        key = e.partition("=")[0]
        if key in keys:
            out[keys.index(key)] = e
        else:
            out.append(e)
            keys.append(key)
    return out


def _image_process(spec: dict, config: dict, command: list[str], env: list[str], cwd: str | None) -> None:
    """The process of a container of an image (containerd oci.WithImageConfig)."""
    process = spec["process"]
    args = list(config.get("Entrypoint") or []) + (command or list(config.get("Cmd") or []))
    if not args:
        raise InvalidArgument("the image has no command: give one after the container id")
    process["args"] = args
    defaults = [e for e in process["env"] if e not in env]  # PATH (and TERM with -t)
    image_env = [e for e in config.get("Env") or [] if isinstance(e, str)]
    process["env"] = _merge_env(_merge_env(defaults, image_env), env)
    process["cwd"] = cwd or config.get("WorkingDir") or "/"
    user = str(config.get("User") or "")
    if user:
        uid, _, gid = user.partition(":")
        if not uid.isdigit() or (gid and not gid.isdigit()):
            raise Unsupported(f"the image's user {user!r} is a name; only numeric users are supported")
        process["user"] = {"uid": int(uid), "gid": int(gid or 0)}


def _run_image(session, args) -> int:
    if len(args.positional) < 2:
        raise InvalidArgument("run needs an image and a container id: run IMAGE ID [CMD...]")
    from dockyard.api.services.snapshots.v1 import snapshots_pb2 as snapshots_pb
    ref, container_id, command = args.positional[0], args.positional[1], args.positional[2:]
    name = images.image_name(session, ref)
    config, chain = images.image_config(session, name)
    spec = specs.rootfs_spec(session.namespace, container_id, "rootfs", command, args.tty, env=args.env)
    spec["root"] = {"path": "rootfs", "readonly": False}
    _image_process(spec, config.config, command, args.env, args.cwd)
    session.snapshots.Prepare(snapshots_pb.PrepareSnapshotRequest(
        snapshotter=SNAPSHOTTER, key=container_id, parent=chain))
    try:
        session.containers.Create(containers_pb.CreateContainerRequest(container=containers_pb.Container(
            id=container_id, image=name, labels=dict(args.label), snapshotter=SNAPSHOTTER,
            snapshot_key=container_id,
            runtime=containers_pb.Container.Runtime(name=args.runtime or DEFAULT_RUNTIME),
            spec=any_pb2.Any(type_url=specs.SPEC_TYPE_URL, value=json.dumps(spec).encode()))))
    except BaseException:
        with contextlib.suppress(DockyardError):
            session.snapshots.Remove(snapshots_pb.RemoveSnapshotRequest(snapshotter=SNAPSHOTTER, key=container_id))
        raise
    return _start(session, args, container_id)


def run(session, args) -> int:
    if args.rm and args.detach:
        raise InvalidArgument("--rm and -d cannot be used together")
    if args.runtime and not os.path.isabs(args.runtime):
        raise InvalidArgument(f"runtime {args.runtime!r} must be an absolute path")
    if args.rootfs is None:
        return _run_image(session, args)
    if not args.positional:
        raise InvalidArgument("run needs a container id: run --rootfs DIR ID [CMD...]")
    if not os.path.isdir(args.rootfs):
        raise InvalidArgument(f"rootfs {args.rootfs} is not a directory")
    container_id, command = args.positional[0], args.positional[1:]
    spec = specs.rootfs_spec(session.namespace, container_id, args.rootfs, command, args.tty,
                             cwd=args.cwd or "/", env=args.env)
    session.containers.Create(containers_pb.CreateContainerRequest(container=containers_pb.Container(
        id=container_id, labels=dict(args.label),
        runtime=containers_pb.Container.Runtime(name=args.runtime or DEFAULT_RUNTIME),
        spec=any_pb2.Any(type_url=specs.SPEC_TYPE_URL, value=json.dumps(spec).encode()))))
    return _start(session, args, container_id)


def _start(session, args, container_id: str) -> int:
    """The task of the container just made: created, started, attached (or detached)."""
    try:
        session.tasks.Create(pb.CreateTaskRequest(
            container_id=container_id, terminal=args.tty, options=create_options(stdin=not args.detach)))
        if args.detach:
            session.tasks.Start(pb.StartRequest(container_id=container_id))
            return 0
        return attach.run_process(session, container_id, "", args.tty)
    finally:
        if args.rm:
            _remove(session, container_id)


def _remove(session, container_id: str) -> None:
    """--rm: the task (stopped by now, or killed if we are leaving early) and the container."""
    with contextlib.suppress(DockyardError):
        tasks.delete_task(session, container_id, force=True)
    containers.delete(session, container_id)


def _label(text: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    if not key:
        raise argparse.ArgumentTypeError(f"invalid label {text!r}: want KEY=VALUE")
    return key, value


def configure(parser) -> None:
    parser.set_defaults(run=run)
    parser.add_argument("--rootfs", metavar="DIR",
                        help="run from this directory as the root filesystem (no image, no snapshot)")
    parser.add_argument("--rm", action="store_true", help="remove the task and the container after it exits")
    parser.add_argument("-d", "--detach", action="store_true", help="return once the task has started")
    parser.add_argument("-t", "--tty", action="store_true", help="allocate a TTY for the container")
    parser.add_argument("--runtime", metavar="PATH",
                        help=f"a runc-compatible OCI runtime binary (default {DEFAULT_RUNTIME})")
    parser.add_argument("--cwd", help="working directory of the process (default /)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="an environment variable for the process (repeatable)")
    parser.add_argument("--label", action="append", default=[], type=_label, metavar="KEY=VALUE",
                        help="a label on the container (repeatable)")
    parser.add_argument("positional", metavar="[IMAGE] ID [CMD...]", nargs=argparse.REMAINDER)
