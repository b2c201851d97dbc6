"""Containers, backed by the metadata store's `Containers`. Namespaced.

On the wire the spec is an `Any` whose value is the runtime spec's JSON (type URL as containerd
writes it), and the runtime options an `Any` holding JSON, as the store keeps them. Extensions
are not stored: a container carrying any is refused rather than silently stripped."""

import json

import grpc
from google.protobuf import any_pb2, empty_pb2

from dockyard.api.events import container_pb2 as container_events
from dockyard.api.services.containers.v1 import containers_pb2 as pb
from dockyard.api.services.containers.v1 import containers_pb2_grpc
from dockyard.containerd import metadata
from dockyard.containerd.events import EventBroker
from dockyard.errors import InvalidArgument, Unsupported

from .. import namespace

SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
OPTIONS_TYPE_URL = "types.dockyard.dev/json"

# The proto names the field snapshot_key; the store (like containerd's) calls the path snapshotkey.
_PATHS = {"snapshot_key": "snapshotkey"}


def _json_any(value, type_url: str) -> any_pb2.Any:
    return any_pb2.Any(type_url=type_url, value=json.dumps(value, sort_keys=True).encode())


def _from_json_any(message: any_pb2.Any, what: str):
    try:
        return json.loads(message.value)
    except ValueError:  # UnicodeDecodeError is one too
        raise InvalidArgument(f"{what} must hold JSON") from None


def message(c: metadata.Container) -> pb.Container:
    m = pb.Container(id=c.id, labels=c.labels, image=c.image, snapshotter=c.snapshotter,
                     snapshot_key=c.snapshot_key, spec=_json_any(c.spec, SPEC_TYPE_URL),
                     runtime=pb.Container.Runtime(name=c.runtime.name))
    if c.runtime.options is not None:
        m.runtime.options.CopyFrom(_json_any(c.runtime.options, OPTIONS_TYPE_URL))
    m.created_at.FromNanoseconds(c.created_at)
    m.updated_at.FromNanoseconds(c.updated_at)
    return m


def from_message(m: pb.Container) -> metadata.Container:
    if m.extensions:
        raise Unsupported(f"container {m.id}: extensions are not supported")
    options = _from_json_any(m.runtime.options, "runtime options") if m.runtime.HasField("options") else None
    spec = _from_json_any(m.spec, "spec") if m.spec.value else {}
    return metadata.Container(id=m.id, runtime=metadata.RuntimeInfo(m.runtime.name, options), spec=spec,
                              image=m.image, snapshotter=m.snapshotter, snapshot_key=m.snapshot_key,
                              labels=dict(m.labels), created_at=m.created_at.ToNanoseconds(),
                              updated_at=m.updated_at.ToNanoseconds())


def wire_paths(fieldpaths) -> list[str]:
    """The store's field paths as the proto names them (for clients)."""
    wire = {store: proto for proto, store in _PATHS.items()}
    return [wire.get(p, p) for p in fieldpaths or ()]


class ContainersService(containers_pb2_grpc.ContainersServicer):
    """Every change is announced on the event broker (/containers/create|update|delete)."""

    def __init__(self, containers: metadata.Containers, events: EventBroker):
        self._containers = containers
        self._events = events

    def Get(self, request, context):
        ns = namespace.required(context)
        return pb.GetContainerResponse(container=message(self._containers.get(ns, request.id)))

    def List(self, request, context):
        ns = namespace.required(context)
        found = self._containers.list(ns, *request.filters)
        return pb.ListContainersResponse(containers=[message(c) for c in found])

    def Create(self, request, context):
        ns = namespace.required(context)
        created = self._containers.create(ns, from_message(request.container))
        self._events.publish(ns, "/containers/create", container_events.ContainerCreate(
            id=created.id, image=created.image, runtime=created.runtime.name))
        return pb.CreateContainerResponse(container=message(created))

    def Update(self, request, context):
        ns = namespace.required(context)
        paths = [_PATHS.get(p, p) for p in request.update_mask.paths]
        updated = self._containers.update(ns, from_message(request.container), paths or None)
        self._events.publish(ns, "/containers/update", container_events.ContainerUpdate(
            id=updated.id, image=updated.image, labels=updated.labels, snapshot_key=updated.snapshot_key))
        return pb.UpdateContainerResponse(container=message(updated))

    def Delete(self, request, context):
        ns = namespace.required(context)
        self._containers.delete(ns, request.id)
        self._events.publish(ns, "/containers/delete", container_events.ContainerDelete(id=request.id))
        return empty_pb2.Empty()


def register(server: grpc.Server, containers: metadata.Containers, events: EventBroker) -> None:
    containers_pb2_grpc.add_ContainersServicer_to_server(ContainersService(containers, events), server)
