"""Restart policies: what happens when a container's process exits, and at daemon start.

HostConfig.RestartPolicy (docker-engine-api-v1.45.yaml `RestartPolicy`): `no` (or ""), `always`,
`unless-stopped`, `on-failure` with an optional MaximumRetryCount. The behaviour follows dockerd's
restart manager (moby restartmanager/restartmanager.go, daemon/monitor.go), written afresh:

- the delay before a restart starts at 100 ms and doubles on each restart up to one minute; a run
  that lasted 10 s or more resets it (so a crash-looping container slows down, a healthy one
  that fails after a while comes back at once);
- a container the user stopped or killed is not restarted (the exit the user caused), whatever
  the policy; `on-failure` restarts only a non-zero exit, at most MaximumRetryCount times
  (0 = no limit), counted in RestartCount;
- while it waits the container shows `Restarting: true` ("Restarting (N) x seconds ago");
- when the daemon starts, a stopped container that has run before is started again when
  `always`, `unless-stopped` (not stopped by the user), or `on-failure` (last exit non-zero, retries
  left) says so — dockerd's "restart on daemon start"; live-restore keeps running ones as they are.

The exit watcher of engine/containers.py hands every exit to `on_exit(container)` after it has
recorded it and published `die`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from dockyard.engine import timeutil
from dockyard.errors import DockyardError, InvalidArgument

log = logging.getLogger(__name__)

INITIAL_DELAY = 0.1   # seconds
MAX_DELAY = 60.0
RESET_AFTER = 10.0    # a run at least this long resets the back-off

POLICIES = ("no", "always", "on-failure", "unless-stopped")


@dataclass(frozen=True)
class RestartPolicy:
    name: str = "no"
    maximum_retry_count: int = 0

    @classmethod
    def of(cls, host_config: dict | None) -> RestartPolicy:
        """The policy of a stored HostConfig (validated at create/update)."""
        raw = (host_config or {}).get("RestartPolicy") or {}
        return cls(raw.get("Name") or "no", int(raw.get("MaximumRetryCount") or 0))

    @property
    def enabled(self) -> bool:
        return self.name != "no"

    def should_restart(self, exit_code: int, manually_stopped: bool, restart_count: int) -> bool:
        """Whether an exit is followed by a restart (without the back-off)."""
        if manually_stopped or not self.enabled:
            return False
        if self.name == "on-failure":
            return exit_code != 0 and (self.maximum_retry_count == 0
                                       or restart_count < self.maximum_retry_count)
        return True  # always, unless-stopped

    def restart_at_daemon_start(self, exit_code: int, manually_stopped: bool, restart_count: int) -> bool:
        """dockerd starts `always` containers again at daemon start even after a user stop."""
        if self.name == "always":
            return True
        return self.should_restart(exit_code, manually_stopped, restart_count)


def validate_restart_policy(host_config: dict) -> None:
    """HostConfig checks for create and update, with dockerd's messages (E3a calls this)."""
    raw = host_config.get("RestartPolicy")
    if raw is None:
        return
    if not isinstance(raw, dict):
        raise InvalidArgument("invalid restart policy: must be an object")
    name = raw.get("Name") or ""
    count = raw.get("MaximumRetryCount") or 0
    if not isinstance(name, str) or isinstance(count, bool) or not isinstance(count, int):
        raise InvalidArgument("invalid restart policy: Name must be a string and "
                              "MaximumRetryCount an integer")
    if name in ("", "no", "always", "unless-stopped"):
        if count != 0:
            msg = "invalid restart policy: maximum retry count can only be used with 'on-failure'"
            raise InvalidArgument(msg + (" and cannot be negative" if count < 0 else ""))
    elif name == "on-failure":
        if count < 0:
            raise InvalidArgument("invalid restart policy: maximum retry count cannot be negative")
    else:
        raise InvalidArgument(f"invalid restart policy: unknown policy '{name}'; use one of "
                              "'no', 'always', 'on-failure', or 'unless-stopped'")
    if name not in ("", "no") and host_config.get("AutoRemove"):
        raise InvalidArgument("can't create 'AutoRemove' container with restart policy")


class Backoff:
    """The delay before the next restart of one container."""

    def __init__(self) -> None:
        self.delay = 0.0

    def next(self, ran_for: float) -> float:
        if ran_for >= RESET_AFTER:
            self.delay = 0.0
        self.delay = INITIAL_DELAY if self.delay == 0 else min(self.delay * 2, MAX_DELAY)
        return self.delay


def _ran_for(state: Any) -> float:
    """Seconds between the last start and exit."""
    if not state.started_at or state.finished_at < state.started_at:
        return 0.0
    return (state.finished_at - state.started_at) / timeutil.SECOND


class Restarts:
    """The daemon component applying restart policies (`Restarts(daemon)`)."""

    def __init__(self, daemon: Any):
        self.daemon = daemon
        self._backoff: dict[str, Backoff] = {}
        self._pending: dict[str, asyncio.Task] = {}
        self._closing = False

    async def start(self) -> None:
        """Daemon start: containers that stopped (before the daemon went down or while it was
        down) and whose policy says so are started again, in the background."""
        for c in self.daemon.store.list():
            if c.state.running and not c.state.restarting:
                continue  # live-restored
            if c.state.started_at == 0 or c.state.removal_in_progress or c.state.dead:
                continue  # never started (stays Created), or on its way out
            policy = RestartPolicy.of(c.host_config)
            if policy.restart_at_daemon_start(c.state.exit_code, c.manually_stopped, c.restart_count):
                # dockerd starts these as a user start would (count and user-stop reset).
                self._schedule(c, 0.0, by_policy=False)

    async def close(self) -> None:
        """Pending restarts are dropped (the daemon is going away); containers keep running."""
        self._closing = True
        tasks = list(self._pending.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._pending.clear()

    def pending(self, container_id: str) -> bool:
        return container_id in self._pending

    async def on_exit(self, container: Any) -> bool:
        """Called by the exit watcher once the exit is recorded (State stopped, `die` published).
        Returns True when a restart is scheduled (the State then shows Restarting)."""
        if self._closing or container.id in self._pending:
            return False
        policy = RestartPolicy.of(container.host_config)
        if not policy.enabled:
            return False
        backoff = self._backoff.setdefault(container.id, Backoff())
        delay = backoff.next(_ran_for(container.state))
        state = container.state
        if not policy.should_restart(state.exit_code, container.manually_stopped, container.restart_count):
            return False
        container.restart_count += 1
        state.set_restarting(state.exit_code, state.finished_at, state.oom_killed)
        self.daemon.store.save(container)
        self._schedule(container, delay, by_policy=True)
        return True

    def cancel(self, container_id: str) -> bool:
        """Drops a pending restart (a user stop, kill, start or remove of a restarting
        container); the caller records the state it wants. True if one was pending."""
        task = self._pending.pop(container_id, None)
        if task is None:
            return False
        if task is not asyncio.current_task():
            task.cancel()
        return True

    def forget(self, container_id: str) -> None:
        """The container is gone (removed): drop its back-off too."""
        self.cancel(container_id)
        self._backoff.pop(container_id, None)

    def reset(self, container_id: str) -> None:
        """A user (re)start: the back-off and RestartCount start over, as dockerd's
        ResetRestartManager(resetCount=true) (the caller saves the record)."""
        self._backoff.pop(container_id, None)
        c = self.daemon.store.find(container_id)
        if c is not None:
            c.restart_count = 0

    def _schedule(self, container: Any, delay: float, *, by_policy: bool) -> None:
        task = asyncio.get_running_loop().create_task(self._restart_after(container.id, delay, by_policy),
                                                      name=f"restart {container.id[:12]}")
        self._pending[container.id] = task

    async def _restart_after(self, container_id: str, delay: float, by_policy: bool) -> None:
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            return
        if self._pending.get(container_id) is not asyncio.current_task():
            return
        # No longer pending once the start begins: a process that exits at once must come back
        # through on_exit like any other exit.
        del self._pending[container_id]
        if self.daemon.store.find(container_id) is None:
            return
        try:
            await self.daemon.containers.start(container_id, restart=by_policy)
        except DockyardError as e:
            log.warning("restart of container %s failed: %s", container_id[:12], e)
            self._give_up(container_id, str(e))
        except Exception:
            log.exception("restart of container %s failed", container_id[:12])
            self._give_up(container_id, "restart failed")

    def _give_up(self, container_id: str, error: str) -> None:
        """A failed restart leaves the container stopped with the error, as dockerd does."""
        c = self.daemon.store.find(container_id)
        if c is None:
            return
        if c.state.restarting or not c.state.running:
            c.state.set_stopped(c.state.exit_code, c.state.finished_at, c.state.oom_killed, error=error)
            self.daemon.store.save(c)
