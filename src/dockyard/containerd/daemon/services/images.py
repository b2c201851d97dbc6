"""Images, backed by the metadata store's `Images`: names pointing at content descriptors.
Namespaced. Delete with `sync` runs a garbage collection before it answers."""

from typing import Callable

import grpc
from google.protobuf import empty_pb2

from dockyard.api.services.images.v1 import images_pb2 as pb
from dockyard.api.services.images.v1 import images_pb2_grpc
from dockyard.api.types import descriptor_pb2
from dockyard.containerd import metadata

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
    def __init__(self, images: metadata.Images, collect_garbage: Callable[[], object]):
        self._images = images
        self._collect_garbage = collect_garbage

    def Get(self, request, context):
        ns = namespace.required(context)
        return pb.GetImageResponse(image=message(self._images.get(ns, request.name)))

    def List(self, request, context):
        ns = namespace.required(context)
        return pb.ListImagesResponse(images=[message(i) for i in self._images.list(ns, *request.filters)])

    def Create(self, request, context):
        ns = namespace.required(context)
        return pb.CreateImageResponse(image=message(self._images.create(ns, from_message(request.image))))

    def Update(self, request, context):
        ns = namespace.required(context)
        updated = self._images.update(ns, from_message(request.image), list(request.update_mask.paths) or None)
        return pb.UpdateImageResponse(image=message(updated))

    def Delete(self, request, context):
        ns = namespace.required(context)
        self._images.delete(ns, request.name)
        if request.sync:
            self._collect_garbage()
        return empty_pb2.Empty()


def register(server: grpc.Server, images: metadata.Images, collect_garbage: Callable[[], object]) -> None:
    images_pb2_grpc.add_ImagesServicer_to_server(ImagesService(images, collect_garbage), server)
