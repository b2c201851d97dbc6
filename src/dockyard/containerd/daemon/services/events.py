"""Events: Publish and Forward into the daemon's broker (`containerd/events.py`), Subscribe
streams from it. Subscribe needs no namespace: its filters select namespaces."""

import grpc
from google.protobuf import empty_pb2

from dockyard.api.services.events.v1 import events_pb2_grpc
from dockyard.containerd.events import EventBroker

from .. import namespace

# How often a waiting Subscribe looks whether its client has gone.
_POLL = 0.5


class EventsService(events_pb2_grpc.EventsServicer):
    def __init__(self, broker: EventBroker):
        self._broker = broker

    def Publish(self, request, context):
        self._broker.publish(namespace.required(context), request.topic, request.event)
        return empty_pb2.Empty()

    def Forward(self, request, context):
        self._broker.forward(request.envelope)
        return empty_pb2.Empty()

    def Subscribe(self, request, context):
        with self._broker.subscribe(request.filters) as sub:
            while context.is_active() and not sub.closed:
                envelope = sub.get(timeout=_POLL)
                if envelope is not None:
                    yield envelope


def register(server: grpc.Server, broker: EventBroker) -> None:
    events_pb2_grpc.add_EventsServicer_to_server(EventsService(broker), server)
