import pytest

from dockyard.engine.state import (HEALTHY, STARTING, UNHEALTHY, Health, State, status_string)
from dockyard.engine.timeutil import SECOND, ZERO_TIME

T0 = 1_700_000_000 * SECOND


def test_created():
    s = State()
    assert s.status == "created"
    assert status_string(s, T0) == "Created"
    d = s.to_dict()
    assert d == {"Status": "created", "Running": False, "Paused": False, "Restarting": False,
                 "OOMKilled": False, "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "",
                 "StartedAt": ZERO_TIME, "FinishedAt": ZERO_TIME}


def test_lifecycle_and_status_strings():
    s = State()
    s.set_running(1234, T0)
    assert (s.status, s.running, s.pid) == ("running", True, 1234)
    assert status_string(s, T0 + 3 * SECOND) == "Up 3 seconds"
    s.set_paused()
    assert s.status == "paused" and s.running
    assert status_string(s, T0 + 120 * SECOND) == "Up 2 minutes (Paused)"
    s.set_unpaused()
    assert s.status == "running"
    s.set_restarting(1, T0 + 10 * SECOND)
    assert (s.status, s.running, s.pid, s.exit_code) == ("restarting", True, 0, 1)
    assert status_string(s, T0 + 15 * SECOND) == "Restarting (1) 5 seconds ago"
    s.set_running(99, T0 + 20 * SECOND)
    assert (s.status, s.exit_code, s.restarting) == ("running", 0, False)
    s.set_stopped(137, T0 + 60 * SECOND, oom=True)
    assert (s.status, s.running, s.pid, s.exit_code, s.oom_killed) == ("exited", False, 0, 137, True)
    assert status_string(s, T0 + 180 * SECOND) == "Exited (137) 2 minutes ago"
    assert s.to_dict()["StartedAt"] == "2023-11-14T22:13:40Z"
    assert s.to_dict()["FinishedAt"] == "2023-11-14T22:14:20Z"


def test_start_failure_records_error():
    s = State()
    s.set_stopped(127, T0, error="exec: \"nope\": executable file not found in $PATH")
    assert s.to_dict()["Error"].startswith("exec:")
    s.set_running(5, T0 + SECOND)
    assert s.error == ""


def test_removal_and_dead():
    s = State()
    s.set_running(1, T0)
    s.set_stopped(0, T0 + SECOND)
    assert s.set_removal_in_progress() is False
    assert s.set_removal_in_progress() is True
    assert s.status == "removing"
    assert status_string(s, T0) == "Removal In Progress"
    assert State.from_dict(s.to_dict()).removal_in_progress
    s.reset_removal_in_progress()
    s.set_dead()
    assert s.status == "dead" and status_string(s, T0) == "Dead"


def test_health_in_status():
    s = State(health=Health())
    s.set_running(1, T0)
    assert status_string(s, T0 + 5 * SECOND) == "Up 5 seconds (health: starting)"
    s.health.status = HEALTHY
    assert status_string(s, T0 + 5 * SECOND) == "Up 5 seconds (healthy)"
    s.health.status = UNHEALTHY
    assert status_string(s, T0 + 5 * SECOND) == "Up 5 seconds (unhealthy)"
    assert s.to_dict()["Health"] == {"Status": "unhealthy", "FailingStreak": 0, "Log": []}


def test_health_record_like_dockerd():
    h = Health()
    assert not h.record(start=T0, end=T0 + 1, exit_code=1, output="no", retries=3,
                        in_start_period=True)
    assert (h.status, h.failing_streak) == (STARTING, 0)  # start period: not counted
    assert not h.record(start=T0, end=T0, exit_code=1, output="no", retries=2)
    assert h.failing_streak == 1
    assert h.record(start=T0, end=T0, exit_code=1, output="no", retries=2)
    assert (h.status, h.failing_streak) == (UNHEALTHY, 2)
    assert h.record(start=T0, end=T0, exit_code=0, output="ok", retries=2)
    assert (h.status, h.failing_streak) == (HEALTHY, 0)
    for _ in range(10):
        h.record(start=T0, end=T0, exit_code=0, output="x" * 5000, retries=2)
    assert len(h.log) == 5 and len(h.log[-1]["Output"]) == 4096
    assert h.log[0]["Start"] == "2023-11-14T22:13:20Z"
    h.reset()
    assert (h.status, h.failing_streak) == (STARTING, 0)


@pytest.mark.parametrize("mutate", [
    lambda s: None,
    lambda s: s.set_running(7, T0 + 123),
    lambda s: (s.set_running(7, T0), s.set_paused()),
    lambda s: (s.set_running(7, T0), s.set_restarting(3, T0 + 5)),
    lambda s: (s.set_running(7, T0), s.set_stopped(2, T0 + 5, oom=True, error="boom")),
    lambda s: (s.set_running(7, T0), s.set_stopped(0, T0 + 5), s.set_dead()),
])
def test_dict_round_trip(mutate):
    s = State(health=Health(status=HEALTHY, failing_streak=0,
                            log=[{"Start": "x", "End": "y", "ExitCode": 0, "Output": ""}]))
    mutate(s)
    assert State.from_dict(s.to_dict()) == s
    s.health = None
    assert "Health" not in s.to_dict()
    assert State.from_dict(s.to_dict()) == s
