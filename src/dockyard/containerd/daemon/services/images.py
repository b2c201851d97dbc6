"""Images, backed by the metadata store's `Images`: names pointing at content descriptors.
Namespaced. Delete with `sync` runs a garbage collection before it answers."""

from typing import Callable

import grpc
from google.protobuf import empty_pb2

from dockyard.api.events import image_pb2 as image_events
from dockyard.api.services.images.v1 import images_pb2 as pb
from dockyard.api.services.images.v1 import images_pb2_grpc
from dockyard.api.types import descriptor_pb2
from dockyard.containerd import metadata
from dockyard.containerd.events import EventBroker

from .. import namespace


def descriptor(d: metadata.Descriptor) -> descriptor_pb2.Descriptor:
    return descriptor_pb2.Descriptor(media_type=d.media_type, digest=d.digest, size=d.size,
                                     annotations=d.annotations)


def from_descriptor(m: descriptor_pb2.Descriptor) -> metadata.Descriptor:
    return metadata.Descriptor(m.media_type, m.digest, m.size, dict(m.annotations))


def message(i: metadata.Image) -> pb.Image:
    m = pb.Image(name=i.name, labels=i.labels, target=descriptor(i.target))
    m.created_at.FromNanoseconds(i.created_at)
    m.updated_at.FromNanoseconds(i.updated_at)
    return m


def from_message(m: pb.Image) -> metadata.Image:
    return metadata.Image(m.name, from_descriptor(m.target), dict(m.labels),
                          m.created_at.ToNanoseconds(), m.updated_at.ToNanoseconds())


class ImagesService(images_pb2_grpc.ImagesServicer):
    """Every change is announced on the event broker (/images/create|update|delete)."""

    def __init__(self, images: metadata.Images, collect_garbage: Callable[[], object], events: EventBroker):
        self._images = images
        self._collect_garbage = collect_garbage
        self._events = events

    def Get(self, request, context):
        ns = namespace.required(context)
        return pb.GetImageResponse(image=message(self._images.get(ns, request.name)))

    def List(self, request, context):
        ns = namespace.required(context)
        return pb.ListImagesResponse(images=[message(i) for i in self._images.list(ns, *request.filters)])

    def Create(self, request, context):
        ns = namespace.required(context)
        created = self._images.create(ns, from_message(request.image))
        self._events.publish(ns, "/images/create", image_events.ImageCreate(name=created.name, labels=created.labels))
        return pb.CreateImageResponse(image=message(created))

    def Update(self, request, context):
        ns = namespace.required(context)
        updated = self._images.update(ns, from_message(request.image), list(request.update_mask.paths) or None)
        self._events.publish(ns, "/images/update", image_events.ImageUpdate(name=updated.name, labels=updated.labels))
        return pb.UpdateImageResponse(image=message(updated))

    def Delete(self, request, context):
        ns = namespace.required(context)
        self._images.delete(ns, request.name)
        self._events.publish(ns, "/images/delete", image_events.ImageDelete(name=request.name))
        if request.sync:
            self._collect_garbage()
        return empty_pb2.Empty()


def register(server: grpc.Server, images: metadata.Images, collect_garbage: Callable[[], object],
             events: EventBroker) -> None:
    images_pb2_grpc.add_ImagesServicer_to_server(ImagesService(images, collect_garbage, events), server)
