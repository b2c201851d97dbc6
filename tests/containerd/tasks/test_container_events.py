"""Container changes are events too (issue: "container and image changes")."""

from dockyard.api.services.containers.v1 import containers_pb2 as cpb


def test_container_create_and_delete_are_published(env):
    events = env.subscribe()
    cid = env.container(["true"])
    env.containers.Delete(cpb.DeleteContainerRequest(id=cid))

    def changes(seen):
        return [t for t, _ in seen if t.startswith("/containers/")]
    events.wait(lambda seen: len(changes(seen)) == 2, "the container events")
    assert changes(events.seen) == ["/containers/create", "/containers/delete"]
