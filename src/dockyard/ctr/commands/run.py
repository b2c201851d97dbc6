"""`run [--rm] [-d] [-t] [--runtime PATH] --rootfs DIR ID [CMD...]`, as ctr's `run --rootfs`:
the container record (Containers), its task created and started (Tasks), the output shown
through Tasks.Attach, and our exit status the task's. `--rm` deletes the task and the container
afterwards, `-d` returns once the task has started. Running from an image comes with the
images issue (pull and unpack); until then an image reference is refused with a clear error."""

import argparse
import contextlib
import json
import os

from google.protobuf import any_pb2

from dockyard.api.services.containers.v1 import containers_pb2 as containers_pb
from dockyard.api.services.tasks.v1 import tasks_pb2 as pb
from dockyard.errors import DockyardError, InvalidArgument, Unsupported

from .. import attach
from .. import spec as specs
from . import containers, tasks

DEFAULT_RUNTIME = "dockyard-runc"


def run(session, args) -> int:
    if args.rootfs is None:
        ref = args.positional[0] if args.positional else ""
        raise Unsupported(f"running an image ({ref or 'IMAGE'}) comes with image pull; "
                          "for now give a directory: run --rootfs DIR ID [CMD...]")
    if not args.positional:
        raise InvalidArgument("run needs a container id: run --rootfs DIR ID [CMD...]")
    if args.rm and args.detach:
        raise InvalidArgument("--rm and -d cannot be used together")
    if not os.path.isdir(args.rootfs):
        raise InvalidArgument(f"rootfs {args.rootfs} is not a directory")
    if args.runtime and not os.path.isabs(args.runtime):
        raise InvalidArgument(f"runtime {args.runtime!r} must be an absolute path")
    container_id, command = args.positional[0], args.positional[1:]
    spec = specs.rootfs_spec(session.namespace, container_id, args.rootfs, command, args.tty,
                             cwd=args.cwd or "/", env=args.env)
    session.containers.Create(containers_pb.CreateContainerRequest(container=containers_pb.Container(
        id=container_id, labels=dict(args.label),
        runtime=containers_pb.Container.Runtime(name=args.runtime or DEFAULT_RUNTIME),
        spec=any_pb2.Any(type_url=specs.SPEC_TYPE_URL, value=json.dumps(spec).encode()))))
    try:
        session.tasks.Create(pb.CreateTaskRequest(
            container_id=container_id, terminal=args.tty, options=attach.create_options(stdin=not args.detach)))
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
