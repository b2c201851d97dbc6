"""A container's state as dockerd keeps it (moby `container/state.go`): the flags and times of
ContainerState in the Engine API schema, the transitions between them, the lowercase status
word of `docker ps --format {{.State}}` and the sentence of its STATUS column ("Up 3 seconds",
"Exited (0) 2 minutes ago"), and the healthcheck record (`Health`, schema `Health` /
`HealthcheckResult`).

Times are integer nanoseconds since the epoch (0: never) inside, RFC 3339 in `to_dict`.
Running stays true while paused or restarting, as in dockerd, so "is it running" checks
treat those alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from dockyard.engine.timeutil import format_rfc3339, human_duration, now_ns, to_ns

STARTING, HEALTHY, UNHEALTHY, NO_HEALTHCHECK = "starting", "healthy", "unhealthy", "none"
HEALTH_LOG_ENTRIES = 5      # results kept in Health.Log (moby maxLogEntries)
HEALTH_OUTPUT_LIMIT = 4096  # bytes of probe output kept (moby maxOutputLen)

Time = int | float | datetime | str | None


@dataclass
class Health:
    status: str = STARTING
    failing_streak: int = 0
    log: list[dict] = field(default_factory=list)  # HealthcheckResult dicts, oldest first

    def record(self, *, start: Time, end: Time, exit_code: int, output: str, retries: int,
               in_start_period: bool = False) -> bool:
        """Adds one probe result the way dockerd does: exit 0 makes the container healthy and
        resets the streak; any other result counts a failure — except while still "starting"
        within the start period — and `retries` failures in a row make it unhealthy. Returns
        whether the status changed (dockerd then emits a health_status event)."""
        self.log.append({"Start": format_rfc3339(start), "End": format_rfc3339(end),
                         "ExitCode": exit_code, "Output": _truncate(output)})
        del self.log[:-HEALTH_LOG_ENTRIES]
        before = self.status
        if exit_code == 0:
            self.failing_streak = 0
            self.status = HEALTHY
        elif not (self.status == STARTING and in_start_period):
            self.failing_streak += 1
            if self.failing_streak >= max(retries, 1):
                self.status = UNHEALTHY
        return self.status != before

    def reset(self) -> None:
        """Back to "starting" with no streak, as on every container start (the log stays)."""
        self.status = STARTING
        self.failing_streak = 0

    def __str__(self) -> str:
        # The STATUS column's suffix: "(health: starting)", "(healthy)", "(unhealthy)".
        return "health: starting" if self.status == STARTING else self.status

    def to_dict(self) -> dict:
        return {"Status": self.status, "FailingStreak": self.failing_streak,
                "Log": [dict(entry) for entry in self.log]}

    @classmethod
    def from_dict(cls, d: dict | None) -> Health | None:
        if not d:
            return None
        return cls(status=d.get("Status") or STARTING, failing_streak=int(d.get("FailingStreak") or 0),
                   log=[dict(entry) for entry in d.get("Log") or []])


def _truncate(output: str) -> str:
    data = output.encode(errors="replace")
    if len(data) <= HEALTH_OUTPUT_LIMIT:
        return output
    return data[:HEALTH_OUTPUT_LIMIT].decode(errors="ignore")


@dataclass
class State:
    running: bool = False
    paused: bool = False
    restarting: bool = False
    oom_killed: bool = False
    dead: bool = False
    removal_in_progress: bool = False
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    started_at: int = 0   # ns since the epoch; 0 = never started
    finished_at: int = 0  # ns since the epoch; 0 = never finished
    health: Health | None = None

    @property
    def status(self) -> str:
        """The Status word: created, running, paused, restarting, removing, exited or dead."""
        if self.running:
            if self.paused:
                return "paused"
            if self.restarting:
                return "restarting"
            return "running"
        if self.removal_in_progress:
            return "removing"
        if self.dead:
            return "dead"
        if self.started_at == 0:
            return "created"
        return "exited"

    def set_running(self, pid: int, started_at: Time = None) -> None:
        """The task started (or was found running after a daemon restart, with its old
        start time)."""
        self.running = True
        self.paused = False
        self.restarting = False
        self.oom_killed = False
        self.pid = pid
        self.exit_code = 0
        self.error = ""
        self.started_at = to_ns(started_at) or now_ns()

    def set_stopped(self, exit_code: int, finished_at: Time = None, oom: bool = False,
                    error: str = "") -> None:
        """The task exited (or could not start: `error` says why, exit code 126/127/128)."""
        self.running = False
        self.paused = False
        self.restarting = False
        self.pid = 0
        self.exit_code = exit_code
        self.oom_killed = oom
        self.error = error
        self.finished_at = to_ns(finished_at) or now_ns()

    def set_restarting(self, exit_code: int, finished_at: Time = None, oom: bool = False) -> None:
        """The task exited and the restart policy will start it again; until then the container
        counts as running (and restarting), as in dockerd."""
        self.running = True
        self.restarting = True
        self.paused = False
        self.pid = 0
        self.exit_code = exit_code
        self.oom_killed = oom
        self.finished_at = to_ns(finished_at) or now_ns()

    def set_paused(self) -> None:
        self.paused = True

    def set_unpaused(self) -> None:
        self.paused = False

    def set_error(self, message: str) -> None:
        self.error = message

    def set_dead(self) -> None:
        """Removal failed halfway: the container can only be removed (again)."""
        self.dead = True

    def set_removal_in_progress(self) -> bool:
        """Marks the removal; returns whether one was in progress already (dockerd answers that
        with 409 "removal of container x is already in progress")."""
        already = self.removal_in_progress
        self.removal_in_progress = True
        return already

    def reset_removal_in_progress(self) -> None:
        self.removal_in_progress = False

    def to_dict(self) -> dict:
        """ContainerState, as inspect shows it (Health only when there is a healthcheck)."""
        d = {"Status": self.status, "Running": self.running, "Paused": self.paused,
             "Restarting": self.restarting, "OOMKilled": self.oom_killed, "Dead": self.dead,
             "Pid": self.pid, "ExitCode": self.exit_code, "Error": self.error,
             "StartedAt": format_rfc3339(self.started_at),
             "FinishedAt": format_rfc3339(self.finished_at)}
        if self.health is not None:
            d["Health"] = self.health.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> State:
        """The inverse of to_dict (a removal in progress comes back from Status "removing")."""
        return cls(running=bool(d.get("Running")), paused=bool(d.get("Paused")),
                   restarting=bool(d.get("Restarting")), oom_killed=bool(d.get("OOMKilled")),
                   dead=bool(d.get("Dead")), removal_in_progress=d.get("Status") == "removing",
                   pid=int(d.get("Pid") or 0), exit_code=int(d.get("ExitCode") or 0),
                   error=d.get("Error") or "", started_at=to_ns(d.get("StartedAt")),
                   finished_at=to_ns(d.get("FinishedAt")), health=Health.from_dict(d.get("Health")))


def status_string(state: State, now: Time = None) -> str:
    """The STATUS column of `docker ps` (ContainerSummary.Status), as moby's State.String."""
    now = to_ns(now) or now_ns()
    if state.running:
        if state.paused:
            return f"Up {human_duration(now - state.started_at)} (Paused)"
        if state.restarting:
            return (f"Restarting ({state.exit_code}) "
                    f"{human_duration(now - state.finished_at)} ago")
        if state.health is not None and state.health.status != NO_HEALTHCHECK:
            return f"Up {human_duration(now - state.started_at)} ({state.health})"
        return f"Up {human_duration(now - state.started_at)}"
    if state.removal_in_progress:
        return "Removal In Progress"
    if state.dead:
        return "Dead"
    if state.started_at == 0:
        return "Created"
    if state.finished_at == 0:
        return ""
    return f"Exited ({state.exit_code}) {human_duration(now - state.finished_at)} ago"
