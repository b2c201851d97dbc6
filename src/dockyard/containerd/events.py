"""The in-process event broker: what happened (a task exited, a container was created) fanned
out to every subscriber whose filters match (containerd `core/events/exchange`).

An event is an `Envelope` (api/services/events/v1/events.proto): timestamp, namespace, topic
(a path: /tasks/exit, /containers/create …) and the payload, one of the messages of package
`dockyard.events` packed in a `google.protobuf.Any`.

Subscribers filter with containerd's language (`filters.py`) over the fields `topic` and
`namespace`, e.g. `namespace==moby,topic~="^/tasks/"`; several filters are ORed; none matches
everything. Publishing never blocks: each subscriber has a bounded queue, and an event that
does not fit is dropped for that subscriber alone, with a warning in the log (a slow reader must
not hold up a task's exit for everyone else).
"""

import logging
import queue
import re
import threading
import time

from google.protobuf import any_pb2, message

from dockyard.api.services.events.v1 import events_pb2
from dockyard.errors import InvalidArgument

from . import filters
from .identifiers import validate_namespace

log = logging.getLogger(__name__)

QUEUE_SIZE = 1024  # events held for one subscriber before it loses some

# A topic is a path of identifier-ish components (containerd's validateTopic).
_TOPIC = re.compile(r"^(/[A-Za-z0-9][A-Za-z0-9._-]*)+$")
_CLOSED = object()


def validate_topic(topic: str) -> str:
    if not topic or len(topic) > 255 or not _TOPIC.match(topic):
        raise InvalidArgument(f"invalid topic {topic!r}: want a path like /tasks/exit")
    return topic


def pack(event: message.Message) -> any_pb2.Any:
    payload = any_pb2.Any()
    payload.Pack(event)
    return payload


def _fields(envelope: events_pb2.Envelope) -> filters.Adaptor:
    return filters.adaptor({"topic": envelope.topic, "namespace": envelope.namespace}, {})


class Subscription:
    """Envelopes for one subscriber, in publishing order. `get()` blocks up to `timeout` and
    returns None when nothing came (or the subscription is closed: see `closed`)."""

    def __init__(self, broker: "EventBroker", match):
        self._broker = broker
        self._match = match
        self._queue: queue.Queue = queue.Queue(QUEUE_SIZE)
        self.closed = False
        self.dropped = 0

    def _offer(self, envelope: events_pb2.Envelope) -> None:
        if not self._match(_fields(envelope)):
            return
        try:
            self._queue.put_nowait(envelope)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:  # one line per streak, not per event
                log.warning("event subscriber is too slow: dropping events",
                            extra={"fields": {"topic": envelope.topic, "dropped": self.dropped}})

    def get(self, timeout: float | None = None) -> events_pb2.Envelope | None:
        if self.closed:
            return None
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _CLOSED:
            self.closed = True
            return None
        return item

    def close(self) -> None:
        self._broker._unsubscribe(self)
        self.closed = True

    def _end(self) -> None:
        try:
            self._queue.put_nowait(_CLOSED)
        except queue.Full:  # it will find `closed` set on its next get
            self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class EventBroker:
    def __init__(self):
        self._lock = threading.Lock()
        self._subscribers: set[Subscription] = set()

    def publish(self, namespace: str, topic: str, event: message.Message | any_pb2.Any) -> None:
        """Post `event` (a dockyard.events message, or one packed already) under `topic`."""
        validate_namespace(namespace)
        validate_topic(topic)
        envelope = events_pb2.Envelope(namespace=namespace, topic=topic,
                                       event=event if isinstance(event, any_pb2.Any) else pack(event))
        envelope.timestamp.FromNanoseconds(time.time_ns())
        self._deliver(envelope)

    def forward(self, envelope: events_pb2.Envelope) -> None:
        """Post an envelope made elsewhere as it is; a missing timestamp is set to now."""
        validate_namespace(envelope.namespace)
        validate_topic(envelope.topic)
        if not envelope.HasField("timestamp"):
            envelope.timestamp.FromNanoseconds(time.time_ns())
        self._deliver(envelope)

    def _deliver(self, envelope: events_pb2.Envelope) -> None:
        log.debug("event", extra={"fields": {"namespace": envelope.namespace, "topic": envelope.topic}})
        with self._lock:
            subscribers = list(self._subscribers)
        for sub in subscribers:
            sub._offer(envelope)

    def subscribe(self, filter_strings=()) -> Subscription:
        """A new subscription, receiving the events published from now on that match."""
        sub = Subscription(self, filters.parse(list(filter_strings)))
        with self._lock:
            self._subscribers.add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(sub)

    def close(self) -> None:
        """Ends every subscription: their readers get None and see `closed`."""
        with self._lock:
            subscribers, self._subscribers = self._subscribers, set()
        for sub in subscribers:
            sub._end()
