"""The engine's event log: every component publishes here, `GET /events` subscribes.

Messages have the shape of the Engine API's EventMessage (docker-engine-api-v1.45.yaml
`EventMessage`; reference engine-api.md §1.9): `Type`, `Action`, `Actor{ID, Attributes}`, `scope`,
`time`, `timeNano`, plus the legacy `status`/`id`/`from` fields for container events (and
`status`/`id` for image events) that docker-compose v1 reads (§3.1) and that API ≤1.51 still carries.

Like dockerd we keep only the last 256 events in memory (nothing is persisted): `since` replays
what is still there. A subscription registers before it replays the history, so no event falls in
between; `until` in the past ends the stream after the replay, in the future at that moment.

Filters follow dockerd's events filter (moby daemon/events/filter.go): `type`, `event` (the
Action), `container`/`network`/`volume`/`plugin`/`daemon` (the actor's id or name, by prefix, as
dockerd does it: whatever the event's type), `image` (id or name, with or without tag), `label`
(`key`, `key=value`, `key!=value`: engine/filters.match_label; all must hold), `scope`;
values of one key are ORed, keys are ANDed.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from dockyard.engine import filters, timeutil
from dockyard.errors import InvalidArgument
from dockyard.images import reference

log = logging.getLogger(__name__)

HISTORY_LIMIT = 256  # dockerd's eventsLimit
QUEUE_LIMIT = 1024  # a subscriber further behind than this is cut off rather than grow without bound

# The filter keys dockerd's events endpoint accepts (swarm ones accepted and never matching events).
FILTER_KEYS = frozenset(
    {"config", "container", "daemon", "event", "image", "label", "network", "node", "plugin", "scope",
     "secret", "service", "type", "volume"})

# Actions carrying details after a colon ("health_status: healthy", "exec_start: sh -c …"):
# a filter naming the bare action matches them by prefix, as dockerd does.
_PREFIX_ACTIONS = ("health_status", "exec_create", "exec_start")

_NAMED_KEYS = ("daemon", "container", "plugin", "volume", "network", "node", "service", "secret", "config")

_END = object()  # sentinel queued to end a subscription (daemon closing, subscriber overflowed)


def container_attributes(container: Any, **extra: Any) -> dict[str, str]:
    """The Actor attributes Docker puts on a container event: its labels, `image` (as given at
    create) and `name` (without the leading slash); `extra` (e.g. exitCode) as strings."""
    config = getattr(container, "config", None) or {}
    attributes = {str(k): str(v) for k, v in (config.get("Labels") or {}).items()}
    attributes["image"] = str(getattr(container, "image", "") or config.get("Image", ""))
    attributes["name"] = str(getattr(container, "name", "")).lstrip("/")
    attributes.update({k: str(v) for k, v in extra.items()})
    return attributes


def _strip_tag(ref: str) -> str:
    """The familiar repository name (`docker.io/library/busybox:latest` → `busybox`); anything
    that is not a reference (an image ID) unchanged."""
    try:
        return reference.parse(ref, default_tag=None).familiar_name()
    except InvalidArgument:
        return ref


def _to_ns(t: int | float | datetime.datetime | None) -> int | None:
    """timeutil's convention (int nanoseconds, float seconds, datetime); None stays "no bound"
    (0 is the epoch: `--since 0` replays everything, as in dockerd)."""
    return None if t is None else timeutil.to_ns(t)


class EventFilter:
    """Docker's events filter over a parsed `filters` query ({key: [values]})."""

    def __init__(self, parsed: Mapping[str, Iterable[str]] | None = None):
        self.filters: dict[str, list[str]] = {k: [str(v) for v in vs] for k, vs in (parsed or {}).items()}
        for key in self.filters:
            if key not in FILTER_KEYS:
                raise InvalidArgument(f"invalid filter '{key}'")

    def _exact(self, key: str, *candidates: str) -> bool:
        wanted = self.filters.get(key)
        return not wanted or any(c in wanted for c in candidates if c)

    def _prefix(self, key: str, *candidates: str) -> bool:
        wanted = self.filters.get(key)
        return not wanted or any(c == w or c.startswith(w) for w in wanted for c in candidates if c)

    def _event(self, action: str) -> bool:
        wanted = self.filters.get("event")
        if not wanted:
            return True
        if any(w in _PREFIX_ACTIONS for w in wanted):
            return self._prefix("event", action)
        return action in wanted

    def _image(self, msg: dict) -> bool:
        if not self.filters.get("image"):
            return True
        actor = msg["Actor"]
        name = actor["Attributes"].get("name" if msg["Type"] == "image" else "image", "")
        ident = actor["ID"]
        return self._exact("image", ident, name, _strip_tag(ident), _strip_tag(name))

    def _named(self, key: str, msg: dict) -> bool:
        """container/network/volume/plugin/daemon/… filters: the actor's id or name, by prefix."""
        if not self.filters.get(key):
            return True
        actor = msg["Actor"]
        return self._prefix(key, actor["ID"], actor["Attributes"].get("name", ""))

    def matches(self, msg: dict) -> bool:
        if not self.filters:
            return True
        attributes = msg["Actor"]["Attributes"]
        return (self._event(msg["Action"])
                and self._exact("type", msg["Type"])
                and self._exact("scope", msg.get("scope", "local"))
                and all(self._named(k, msg) for k in _NAMED_KEYS)
                and self._image(msg)
                and filters.match_label(attributes, self.filters.get("label", ())))


class Subscription:
    """An async iterator of event messages: the replayed history, then live ones, until `until`
    or close(). Registered with the log at creation."""

    def __init__(self, events: Events, since_ns: int | None, until_ns: int | None, flt: EventFilter,
                 internal: bool = False):
        self.internal = internal
        self._events = events
        self._until_ns = until_ns
        self._filter = flt
        self._queue: asyncio.Queue = asyncio.Queue(QUEUE_LIMIT)
        self._closed = False
        self._replay = collections.deque(
            m for m in events._history
            if (since_ns is None or m["timeNano"] >= since_ns)
            and (until_ns is None or m["timeNano"] <= until_ns)
            and flt.matches(m))
        # With neither bound dockerd sends only new events.
        if since_ns is None and until_ns is None:
            self._replay.clear()
        events._subscribers.add(self)

    def _offer(self, msg: Any) -> None:
        if self._closed:
            return
        try:
            self._queue.put_nowait(msg)
        except asyncio.QueueFull:
            log.warning("events: a subscriber fell %d events behind; ending its stream", QUEUE_LIMIT)
            self._detach()
            self._queue.get_nowait()
            self._queue.put_nowait(_END)

    def _detach(self) -> None:
        self._closed = True
        self._events._subscribers.discard(self)

    def close(self) -> None:
        if not self._closed:
            self._detach()
            try:
                self._queue.put_nowait(_END)
            except asyncio.QueueFull:
                self._queue.get_nowait()
                self._queue.put_nowait(_END)

    async def aclose(self) -> None:
        self.close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> dict:
        if self._replay:
            return self._replay.popleft()
        while True:
            timeout = None
            if self._until_ns is not None:
                timeout = (self._until_ns - time.time_ns()) / 1e9
                if timeout <= 0:
                    self.close()
                    raise StopAsyncIteration
            if self._closed and self._queue.empty():
                raise StopAsyncIteration
            try:
                msg = await asyncio.wait_for(self._queue.get(), timeout)
            except asyncio.TimeoutError:
                continue  # re-check the deadline
            if msg is _END:
                self._detach()
                raise StopAsyncIteration
            if self._until_ns is not None and msg["timeNano"] > self._until_ns:
                self.close()
                raise StopAsyncIteration
            if self._filter.matches(msg):
                return msg

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()


class Events:
    """The daemon's event log (a Component: `Events(daemon)`, start(), close())."""

    def __init__(self, daemon: Any = None, *, history_limit: int = HISTORY_LIMIT):
        self.daemon = daemon
        self._history: collections.deque[dict] = collections.deque(maxlen=history_limit)
        self._subscribers: set[Subscription] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        for sub in list(self._subscribers):
            sub.close()

    def publish(self, type: str, action: str, actor_id: str, attributes: Mapping[str, Any] | None = None,
                scope: str = "local") -> dict:
        """Record one event and hand it to every subscriber; returns the message. Callable from
        the event loop (synchronously) or, via call_soon_threadsafe, from another thread."""
        now = time.time_ns()
        msg: dict[str, Any] = {}
        if type in ("container", "image"):
            # Legacy fields (API ≤1.51), dockerd fills them for containers and images only.
            msg["status"] = action
            msg["id"] = actor_id
            if type == "container":
                msg["from"] = str((attributes or {}).get("image", ""))
        msg.update({
            "Type": type,
            "Action": action,
            "Actor": {"ID": actor_id, "Attributes": {str(k): str(v) for k, v in (attributes or {}).items()}},
            "scope": scope,
            "time": now // 1_000_000_000,
            "timeNano": now,
        })
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._deliver, msg)
        else:
            self._deliver(msg)
        return msg

    def _deliver(self, msg: dict) -> None:
        self._history.append(msg)
        for sub in list(self._subscribers):
            sub._offer(msg)

    def subscribe(self, since: int | float | datetime.datetime | None = None,
                  until: int | float | datetime.datetime | None = None,
                  filters: Mapping[str, Iterable[str]] | EventFilter | None = None, *,
                  internal: bool = False) -> Subscription:
        """Events from `since` (int nanoseconds, float seconds or a datetime, as engine/timeutil;
        None with until None = only new ones) until
        `until` (None = until closed). Filters as parsed from the query ({key: [values]});
        InvalidArgument for an unknown key. `internal` ones (the daemon's own, e.g. health
        monitors following starts) are not counted as listeners."""
        flt = filters if isinstance(filters, EventFilter) else EventFilter(filters)
        return Subscription(self, _to_ns(since), _to_ns(until), flt, internal)

    def listeners(self) -> int:
        """How many clients subscribe (/info NEventsListener)."""
        return sum(1 for sub in self._subscribers if not sub.internal)

    def history(self) -> list[dict]:
        return list(self._history)
