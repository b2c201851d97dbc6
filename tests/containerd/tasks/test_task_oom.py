"""/tasks/oom through the daemon: a task that outgrows its memory limit is OOM-killed; a
Subscribe stream sees /tasks/oom for it before its /tasks/exit, and a restarted daemon neither
repeats it nor misses one that happened while it was down."""

import json
import os
import uuid

import pytest
from google.protobuf import any_pb2

from dockyard.api.services.containers.v1 import containers_pb2 as cpb
from dockyard.api.services.tasks.v1 import tasks_pb2 as tpb
from dockyard.shim.client import ShimClient
from tests.containerd.tasks.conftest import CGROUP_PARENT, SPEC_TYPE_URL, pytestmark  # noqa: F401
from tests.fixtures import busybox
from tests.shim.conftest import wait_for
from tests.shim.test_oom import HOG, LIMIT, MEMSW_V1, memory_cgroup_available

pytestmark = [pytestmark, pytest.mark.skipif(not memory_cgroup_available(), reason="no memory cgroup controller")]


def limited_container(env, args) -> str:
    cid = "oom" + uuid.uuid4().hex[:10]
    spec = busybox.default_spec(args)
    spec["process"]["terminal"] = False
    cgroup = f"/{CGROUP_PARENT}/{uuid.uuid4().hex[:12]}"
    spec["linux"]["cgroupsPath"] = cgroup
    memory = {"limit": LIMIT}
    if os.path.exists(MEMSW_V1) or os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        memory["swap"] = LIMIT
    spec["linux"].setdefault("resources", {})["memory"] = memory
    env.cgroups.append(cgroup)
    env.containers.Create(cpb.CreateContainerRequest(container=cpb.Container(
        id=cid, runtime=cpb.Container.Runtime(name="dockyard-runc"),
        spec=any_pb2.Any(type_url=SPEC_TYPE_URL, value=json.dumps(spec).encode()))))
    return cid


def topics_of(events, cid):
    with events._cond:
        return [t for t, e in events.seen if getattr(e, "container_id", None) == cid]


def test_oom_is_published_before_the_exit(env):
    events = env.subscribe('topic~="^/tasks/"')
    cid = limited_container(env, HOG)
    env.create_task(cid)
    env.tasks.Start(tpb.StartRequest(container_id=cid))
    assert env.tasks.Wait(tpb.WaitRequest(container_id=cid)).exit_status == 137
    events.wait(lambda seen: events.of("/tasks/exit", cid), "/tasks/exit")
    topics = topics_of(events, cid)
    # cgroup v1 notifies once per OOM the kernel meets, and one kill can take several: at least
    # one /tasks/oom, every one of them before the exit.
    assert "/tasks/oom" in topics, topics
    assert len(topics) - topics[::-1].index("/tasks/oom") - 1 < topics.index("/tasks/exit"), topics
    assert os.path.exists(os.path.join(env.bundle(cid), "oom-published"))

    # A restarted daemon resubscribes and does not tell of the OOM again.
    env.restart()
    events = env.subscribe('topic~="^/tasks/"')
    env.tasks.Delete(tpb.DeleteTaskRequest(container_id=cid))
    events.wait(lambda seen: events.of("/tasks/delete", cid), "/tasks/delete")
    assert "/tasks/oom" not in topics_of(events, cid)
    env.containers.Delete(cpb.DeleteContainerRequest(id=cid))
    env.assert_clean(cid)


def test_oom_while_the_daemon_is_down_is_published_after_restart(env):
    cid = limited_container(env, ["sh", "-c", "read x; " + HOG[2]])
    env.create_task(cid, stdin=True)
    env.tasks.Start(tpb.StartRequest(container_id=cid))
    env.kill_daemon()
    with ShimClient(os.path.join(env.state, "shims", "tasktest", cid, "shim.sock"), timeout=30) as c:
        with c.attach(stdin=True) as stream:
            stream.write(b"go\n")
            stream.settimeout(30)
            while (frame := stream.read()) is not None and frame[0] != "exit":
                pass
        assert c.state()["oom_kills"] >= 1
        oom_kills = c.state()["oom_kills"]
    assert not os.path.exists(os.path.join(env.bundle(cid), "oom-published"))
    env.start()
    # Published at start-up, when the daemon resubscribed (before we could subscribe): the
    # bundle records it right after publishing.
    published = os.path.join(env.bundle(cid), "oom-published")
    wait_for(lambda: os.path.exists(published), 30, "the OOM to be published")
    with open(published) as f:
        assert json.load(f) == {"oom_kills": oom_kills}
    events = env.subscribe('topic~="^/tasks/"')
    assert env.tasks.Wait(tpb.WaitRequest(container_id=cid)).exit_status == 137
    env.tasks.Delete(tpb.DeleteTaskRequest(container_id=cid))
    events.wait(lambda seen: events.of("/tasks/delete", cid), "/tasks/delete")
    assert "/tasks/oom" not in topics_of(events, cid)
    env.containers.Delete(cpb.DeleteContainerRequest(id=cid))
    env.assert_clean(cid)
