"""Docker's container ids are 64 hex characters: under a state directory of ordinary depth the
shim's socket (`<state>/shims/<ns>/<id>/shim.sock`) and its console sockets are longer than a
unix socket address holds (107 bytes). They are bound and reached through their directory
(dockyard.linux.unixsock), by the shim, its clients and the runtime given --console-socket —
Debian's runc as well as ours."""

import os
import secrets

import pytest

from dockyard.api.services.tasks.v1 import tasks_pb2 as tpb
from dockyard.linux.unixsock import SUN_PATH_MAX
from tests.containerd.tasks.conftest import NS, pytestmark  # noqa: F401

RUNC = "/usr/sbin/runc"


@pytest.mark.parametrize("runtime", ["dockyard-runc", RUNC])
@pytest.mark.parametrize("terminal", [False, True], ids=["pipes", "tty"])
def test_a_64_hex_id_runs_with_and_without_a_terminal(env, runtime, terminal):
    if runtime == RUNC and not os.access(RUNC, os.X_OK):
        pytest.skip("Debian's runc is not installed")
    cid = secrets.token_hex(32)
    socket_path = os.path.join(env.state, "shims", NS, cid, "shim.sock")
    assert len(socket_path) > SUN_PATH_MAX  # the case under test
    env.container(["sh", "-c", "tty; echo done"], cid=cid, runtime=runtime, terminal=terminal)
    env.create_task(cid)
    env.tasks.Start(tpb.StartRequest(container_id=cid))
    assert env.tasks.Wait(tpb.WaitRequest(container_id=cid)).exit_status == 0
    lines = [line.strip() for line in env.log_lines(cid)]
    assert lines[-1] == "done"
    assert lines[0].startswith("/dev/pts/") if terminal else lines[0] == "not a tty"
    env.tasks.Delete(tpb.DeleteTaskRequest(container_id=cid))
    env.assert_clean(cid)
