"""ctr's output layout, without a daemon: Go's tabwriter and go-units' wording."""

import grpc
import pytest
from google.protobuf import timestamp_pb2

from dockyard.ctr import command_name, session
from dockyard.ctr.output import Table, human_duration, human_size, progress_bytes, rfc3339
from dockyard.errors import NotFound, Unsupported


def test_table_pads_terminated_cells_and_leaves_the_rest():
    # ctr tasks ls: the header ends with a tab, the rows do not.
    t = Table(minwidth=4, padding=4)
    t.row("TASK\tPID\tSTATUS\t")
    t.row("web\t1234\tRUNNING")
    assert t.render() == "TASK    PID     STATUS    \nweb     1234    RUNNING\n"


def test_table_minwidth():
    t = Table(minwidth=4, padding=1)
    t.row("a\tb\t")
    assert t.render() == "a   b   \n"


@pytest.mark.parametrize("size, text", [(0, "0B"), (12, "12B"), (1234, "1.234kB"), (1_500_000, "1.5MB"),
                                        (999, "999B"), (1000, "1kB")])
def test_human_size(size, text):
    assert human_size(size) == text


@pytest.mark.parametrize("size, text", [(0, "0.0 B"), (1536, "1.5 KiB"), (2_202_009, "2.1 MiB")])
def test_progress_bytes(size, text):
    assert progress_bytes(size) == text


@pytest.mark.parametrize("seconds, text", [(0.5, "Less than a second"), (1, "1 second"), (59, "59 seconds"),
                                           (60, "About a minute"), (600, "10 minutes"), (3600, "About an hour"),
                                           (5 * 3600, "5 hours"), (3 * 86400, "3 days"), (20 * 86400, "2 weeks"),
                                           (90 * 86400, "3 months"), (800 * 86400, "2 years")])
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


def test_rfc3339():
    assert rfc3339(timestamp_pb2.Timestamp(seconds=0, nanos=0)) == "0001-01-01T00:00:00Z"
    assert rfc3339(timestamp_pb2.Timestamp(seconds=946684800, nanos=120000000)) == "2000-01-01T00:00:00.12Z"


def test_command_name_skips_global_values():
    assert command_name(["--address", "tasks", "-n", "x", "t", "ls"]) == "tasks"
    assert command_name(["--namespace=x", "run", "--rm"]) == "run"
    assert command_name(["nope"]) is None


class _RpcError(grpc.RpcError):
    def __init__(self, code, details):
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details


def test_a_service_not_served_says_so():
    e = session._error("Tasks", _RpcError(grpc.StatusCode.UNIMPLEMENTED, "Method not found!"))
    assert isinstance(e, Unsupported) and str(e) == "dockyard-containerd does not serve Tasks yet"


def test_an_unsupported_call_of_a_served_service_keeps_its_message():
    e = session._error("Tasks", _RpcError(grpc.StatusCode.UNIMPLEMENTED, "checkpoint is not supported"))
    assert isinstance(e, Unsupported) and str(e) == "checkpoint is not supported"
    assert isinstance(session._error("Tasks", _RpcError(grpc.StatusCode.NOT_FOUND, "task x")), NotFound)
