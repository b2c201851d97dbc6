"""HEALTHCHECK: periodic probes inside running containers, their outcome in State.Health.

The configuration is Docker's HealthConfig (docker-engine-api-v1.45.yaml `HealthConfig`): `Test`
(`[]` inherit, `["NONE"]` off, `["CMD", arg…]`, `["CMD-SHELL", command]`), durations in
nanoseconds `Interval` (default 30 s), `Timeout` (30 s), `StartPeriod` (0), `StartInterval` (5 s),
and `Retries` (3). The image's HEALTHCHECK and the one given at create merge field by field
(`merge_healthcheck`, used at create so inspect shows the effective one, as dockerd does).

Behaviour as dockerd's (moby daemon/health.go), written afresh:
- when the container starts, Health is `starting` with the streak at 0 (the log is kept);
- a probe runs `Interval` after the previous one (`StartInterval` while still starting within the
  start period) through the exec machinery (`daemon.execs.run_probe`); exit 0 is a success
  (`healthy`, streak 0), anything else a failure: the streak grows (not while starting inside the
  start period) and reaching `Retries` makes it `unhealthy`; a probe over `Timeout` is a failure
  with ExitCode -1 and "Health check exceeded timeout (…)";
- the last 5 results are kept in Health.Log (output cut at 4096 bytes) — the bookkeeping of one
  result is engine/state.py's Health.record;
- each change of status publishes `health_status: <status>`;
- when the container stops, the monitor stops and the status becomes `unhealthy`.

Monitors follow the container's `start`/`die` events from the event log (and are re-armed for
running containers at daemon start, live restore), so the lifecycle code needs no extra hook.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from dockyard.engine import timeutil
from dockyard.engine.events import EventFilter, container_attributes
from dockyard.engine.state import STARTING, UNHEALTHY
from dockyard.engine.state import Health as HealthRecord
from dockyard.errors import DockyardError, InvalidArgument

log = logging.getLogger(__name__)

SECOND = timeutil.SECOND
DEFAULT_INTERVAL = 30 * SECOND
DEFAULT_TIMEOUT = 30 * SECOND
DEFAULT_START_PERIOD = 0
DEFAULT_START_INTERVAL = 5 * SECOND
DEFAULT_RETRIES = 3
MIN_DURATION = 1_000_000  # 1 ms: dockerd refuses shorter non-zero durations

_DURATIONS = ("Interval", "Timeout", "StartPeriod", "StartInterval")


def merge_healthcheck(user: dict | None, image: dict | None) -> dict | None:
    """The effective HealthConfig: the create one, its empty fields filled from the image's."""
    if not user:
        return dict(image) if image else None
    if not image:
        return dict(user)
    merged = dict(user)
    if not merged.get("Test"):
        merged["Test"] = image.get("Test")
    for key in (*_DURATIONS, "Retries"):
        if not merged.get(key) and image.get(key):
            merged[key] = image[key]
    return merged


def validate_healthcheck(hc: Any) -> None:
    """Create-time checks with dockerd's messages (E3a calls this on Config.Healthcheck)."""
    if hc is None:
        return
    if not isinstance(hc, dict):
        raise InvalidArgument("invalid Healthcheck: must be an object")
    test = hc.get("Test")
    if test is not None and (not isinstance(test, list) or not all(isinstance(t, str) for t in test)):
        raise InvalidArgument("invalid Healthcheck: Test must be a list of strings")
    if test and test[0] not in ("NONE", "CMD", "CMD-SHELL"):
        raise InvalidArgument(f"invalid Healthcheck: unknown test type {test[0]!r}: "
                              "use NONE, CMD or CMD-SHELL")
    for key in _DURATIONS:
        value = hc.get(key) or 0
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidArgument(f"invalid Healthcheck: {key} must be an integer (nanoseconds)")
        if value != 0 and value < MIN_DURATION:
            raise InvalidArgument(f"{key} in Healthcheck cannot be less than 1ms")
    retries = hc.get("Retries") or 0
    if isinstance(retries, bool) or not isinstance(retries, int):
        raise InvalidArgument("invalid Healthcheck: Retries must be an integer")
    if retries < 0:
        raise InvalidArgument("Retries in Healthcheck cannot be negative")


def probe_command(hc: dict | None, shell: list[str] | None = None) -> list[str] | None:
    """The argv a probe runs, or None when there is no (usable) healthcheck."""
    test = (hc or {}).get("Test") or []
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD" and len(test) > 1:
        return list(test[1:])
    if test[0] == "CMD-SHELL" and len(test) > 1:
        return [*(shell or ["/bin/sh", "-c"]), " ".join(test[1:])]
    return None


def _duration(hc: dict, key: str, default: int) -> int:
    return int(hc.get(key) or 0) or default


def format_duration(ns: int) -> str:
    """Go's time.Duration String for the timeout message ("30s", "1.5s", "500ms", "1m0s")."""
    if ns < SECOND:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000)):
            if ns >= size:
                return f"{ns / size:.9g}{unit}".replace("e+", "e")
        return f"{ns}ns"
    seconds = ns / SECOND
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:.9f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{int(hours)}h{int(minutes)}m{text}"
    if minutes:
        return f"{int(minutes)}m{text}"
    return text


class Health:
    """The daemon component running health monitors (`Health(daemon)`)."""

    def __init__(self, daemon: Any):
        self.daemon = daemon
        self._monitors: dict[str, asyncio.Task] = {}
        self._follower: asyncio.Task | None = None
        self._subscription = None

    async def start(self) -> None:
        # Subscribe first, then re-arm running containers: a start in between is not missed
        # (arming twice is harmless: it replaces the monitor).
        self._subscription = self.daemon.events.subscribe(
            filters=EventFilter({"type": ["container"], "event": ["start", "die", "destroy"]}), internal=True)
        self._follower = asyncio.get_running_loop().create_task(self._follow(), name="health events")
        for c in self.daemon.store.list():
            if c.state.running and not c.state.restarting:
                self._arm(c)
            elif c.state.health is not None and c.state.health.status != UNHEALTHY:
                # Exited while the daemon was down (its die came before we listened).
                c.state.health.status = UNHEALTHY
                self.daemon.store.save(c)

    async def close(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
        tasks = [t for t in (self._follower, *self._monitors.values()) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._monitors.clear()

    async def _follow(self) -> None:
        async for msg in self._subscription:
            cid = msg["Actor"]["ID"]
            try:
                if msg["Action"] == "start":
                    c = self.daemon.store.find(cid)
                    if c is not None:
                        self._arm(c)
                else:
                    self._disarm(cid, mark_unhealthy=msg["Action"] == "die")
            except Exception:
                log.exception("health: handling %s of %s", msg["Action"], cid[:12])

    def _arm(self, c: Any) -> None:
        """(Re)starts the monitor of a running container, its status `starting`."""
        self._disarm(c.id, mark_unhealthy=False)
        hc = c.config.get("Healthcheck")
        cmd = probe_command(hc, c.config.get("Shell"))
        if cmd is None:
            return
        if c.state.health is None:
            c.state.health = HealthRecord()
        c.state.health.reset()
        self.daemon.store.save(c)
        self._monitors[c.id] = asyncio.get_running_loop().create_task(
            self._monitor(c.id, hc, cmd), name=f"health {c.id[:12]}")

    def _disarm(self, cid: str, *, mark_unhealthy: bool) -> None:
        task = self._monitors.pop(cid, None)
        if task is None:
            return
        task.cancel()
        c = self.daemon.store.find(cid) if mark_unhealthy else None
        if c is not None and c.state.health is not None:
            # dockerd reports a stopped container's health as unhealthy (without an event).
            c.state.health.status = UNHEALTHY
            self.daemon.store.save(c)

    async def _monitor(self, cid: str, hc: dict, cmd: list[str]) -> None:
        interval = _duration(hc, "Interval", DEFAULT_INTERVAL)
        start_interval = _duration(hc, "StartInterval", DEFAULT_START_INTERVAL)
        start_period = _duration(hc, "StartPeriod", DEFAULT_START_PERIOD)
        timeout = _duration(hc, "Timeout", DEFAULT_TIMEOUT)
        retries = int(hc.get("Retries") or 0) or DEFAULT_RETRIES
        me = asyncio.current_task()
        c = self.daemon.store.find(cid)
        started = c.state.started_at if c is not None else 0
        while c is not None and self._monitors.get(cid) is me:
            starting = c.state.health is not None and c.state.health.status == STARTING
            in_start = timeutil.now_ns() - started < start_period
            await asyncio.sleep((start_interval if in_start and starting else interval) / SECOND)
            c = self.daemon.store.find(cid)
            if c is None:
                return
            start, exit_code, output = await self._probe(c, cmd, timeout)
            c = self.daemon.store.find(cid)
            if c is None or self._monitors.get(cid) is not me or c.state.health is None:
                return  # stopped or removed while probing: the result is moot
            changed = c.state.health.record(
                start=start, end=timeutil.now_ns(), exit_code=exit_code, output=output,
                retries=retries, in_start_period=start - started < start_period)
            self.daemon.store.save(c)
            if changed:
                self.daemon.events.publish("container", f"health_status: {c.state.health.status}",
                                           c.id, container_attributes(c))

    async def _probe(self, c: Any, cmd: list[str], timeout: int) -> tuple[int, int, str]:
        """Runs one probe: (start time in ns, exit code, output)."""
        start = timeutil.now_ns()
        try:
            # run_probe kills the probe at `timeout` and raises TimeoutError; the outer bound
            # only guards against a probe that cannot be killed.
            exit_code, output = await asyncio.wait_for(
                self.daemon.execs.run_probe(c, cmd, timeout / SECOND), timeout / SECOND + 10)
        except (TimeoutError, asyncio.TimeoutError):
            exit_code, output = -1, f"Health check exceeded timeout ({format_duration(timeout)})"
        except DockyardError as e:
            exit_code, output = -1, str(e)
        if isinstance(output, bytes):
            output = output.decode("utf-8", "replace")
        return start, int(exit_code), str(output)
