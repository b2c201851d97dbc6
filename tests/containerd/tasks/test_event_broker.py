"""The in-process event broker, without a daemon: filters, fan-out, slow subscribers."""

import pytest

from dockyard.api.events import task_pb2
from dockyard.containerd import events
from dockyard.errors import InvalidArgument


def test_filters_select_topic_and_namespace():
    broker = events.EventBroker()
    tasks_in_a = broker.subscribe(['namespace==a,topic~="^/tasks/"'])
    everything = broker.subscribe()
    broker.publish("a", "/tasks/exit", task_pb2.TaskExit(container_id="c1", exit_status=3))
    broker.publish("b", "/tasks/exit", task_pb2.TaskExit(container_id="c2"))
    broker.publish("a", "/containers/create", task_pb2.TaskStart(container_id="c3"))
    got = tasks_in_a.get(0)
    assert (got.namespace, got.topic) == ("a", "/tasks/exit") and got.timestamp.seconds > 0
    exit_event = task_pb2.TaskExit()
    assert got.event.Unpack(exit_event) and exit_event.exit_status == 3
    assert tasks_in_a.get(0) is None
    assert [everything.get(0).topic for _ in range(3)] == ["/tasks/exit", "/tasks/exit", "/containers/create"]


def test_a_slow_subscriber_loses_events_without_blocking_others(caplog):
    broker = events.EventBroker()
    slow, fast = broker.subscribe(), broker.subscribe()
    for i in range(events.QUEUE_SIZE + 10):
        broker.publish("a", "/tasks/start", task_pb2.TaskStart(pid=i))
        assert fast.get(0) is not None
    assert slow.dropped == 10
    assert "too slow" in caplog.text
    assert sum(1 for _ in iter(lambda: slow.get(0), None)) == events.QUEUE_SIZE


def test_close_ends_subscriptions_and_unsubscribe_stops_delivery():
    broker = events.EventBroker()
    sub, gone = broker.subscribe(), broker.subscribe()
    gone.close()
    broker.publish("a", "/tasks/start", task_pb2.TaskStart())
    assert gone.get(0) is None
    broker.close()
    assert sub.get(0) is not None and sub.get(0) is None and sub.closed


@pytest.mark.parametrize("topic", ["", "tasks", "/tasks/", "/tasks//exit", "/tasks/ex it"])
def test_bad_topics_are_refused(topic):
    with pytest.raises(InvalidArgument):
        events.EventBroker().publish("a", topic, task_pb2.TaskStart())


def test_bad_filters_are_refused():
    with pytest.raises(InvalidArgument):
        events.EventBroker().subscribe(["topic~="])
