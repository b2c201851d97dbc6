"""GET /events: the daemon's event stream (engine-api.md §1.9; moby system_routes.go getEvents).

`since` and `until` as the docker CLI sends them (unix seconds with a fraction, which it computes
from durations and dates client-side) or any other form engine/timeutil.parse_timestamp reads;
`filters` in either JSON form (keys checked: "invalid filter 'x'"). The 200 and its headers go
out at once, then one JSON object per line: the replayed history (with since or until), then live
events — until `until` (at once when it is past) or the client leaving.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from dockyard.engine import timeutil
from dockyard.engine.api import DAEMON, httputil
from dockyard.engine.events import EventFilter
from dockyard.errors import InvalidArgument


def _time(request: web.Request, name: str, now: int) -> int | None:
    text = request.query.get(name, "")
    return timeutil.parse_timestamp(text, now) if text else None


async def get_events(request: web.Request) -> web.StreamResponse:
    now = timeutil.now_ns()
    since = _time(request, "since", now)
    until = _time(request, "until", now)
    if since is not None and until is not None and until < since:
        raise InvalidArgument(f"`since` time ({request.query['since']}) cannot be after "
                              f"`until` time ({request.query['until']})")
    flt = EventFilter(httputil.query_filters(request))
    subscription = request.app[DAEMON].events.subscribe(since, until, flt)
    try:
        stream = await httputil.json_stream(request)
    except BaseException:
        subscription.close()
        raise
    gone = asyncio.ensure_future(httputil.disconnected(request))
    try:
        events = aiter(subscription)
        while True:
            following = asyncio.ensure_future(anext(events))
            await asyncio.wait({following, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not following.done():
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await following
                break
            try:
                msg = following.result()
            except StopAsyncIteration:
                break
            await stream.send(msg)
        with contextlib.suppress(ConnectionError):
            await stream.close()
    except ConnectionError:
        pass  # the client left while we wrote
    finally:
        subscription.close()
        gone.cancel()
    return stream


def routes() -> list[web.RouteDef]:
    return [web.get("/events", get_events)]
