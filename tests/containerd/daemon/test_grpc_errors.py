"""The one map from dockyard.errors to gRPC codes, through a real server: a fake service raises
each error class, the client sees the code and a one-line message, never a traceback."""

import errno
import os
from concurrent import futures

import grpc
import pytest

from dockyard import errors
from dockyard.containerd.daemon import client, namespace
from dockyard.containerd.daemon.errors import ErrorInterceptor, from_rpc_error

RAISED = {
    "NotFound": (errors.NotFound("container web not found"), grpc.StatusCode.NOT_FOUND),
    "Conflict": (errors.Conflict("container web already exists"), grpc.StatusCode.FAILED_PRECONDITION),
    "InvalidArgument": (errors.InvalidArgument("bad id"), grpc.StatusCode.INVALID_ARGUMENT),
    "Unsupported": (errors.Unsupported("checkpoints are not supported"), grpc.StatusCode.UNIMPLEMENTED),
    "SystemFailure": (errors.SystemFailure("mount: permission denied"), grpc.StatusCode.INTERNAL),
    "DockyardError": (errors.DockyardError("something we meant"), grpc.StatusCode.UNKNOWN),
    "NoSpace": (errors.NoSpace("write ingest: no space left on device"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    "ENOSPC": (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), grpc.StatusCode.RESOURCE_EXHAUSTED),
}


def _raise(name: str):
    raise RAISED[name][0] if name in RAISED else RuntimeError("disk at /x\nsecond line")


def unary(request: bytes, context):
    _raise(request.decode())


def stream(request: bytes, context):
    yield b"first"
    _raise(request.decode())


def abort(request: bytes, context):
    context.abort(grpc.StatusCode.PERMISSION_DENIED, "not you")


def which_namespace(request: bytes, context):
    return namespace.required(context).encode()


@pytest.fixture(scope="module")
def channel(tmp_path_factory):
    address = str(tmp_path_factory.mktemp("grpc") / "s")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=[ErrorInterceptor()])
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.Fake", {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
        "Abort": grpc.unary_unary_rpc_method_handler(abort),
        "Namespace": grpc.unary_unary_rpc_method_handler(which_namespace),
    })])
    server.add_insecure_port(f"unix:{address}")
    server.start()
    ch = client.connect(address, timeout=10)
    yield ch
    ch.close()
    server.stop(None).wait()


def call(channel, method: str, request: bytes = b"", metadata=None):
    return channel.unary_unary(f"/test.Fake/{method}")(request, timeout=10, metadata=metadata)


@pytest.mark.parametrize("name", sorted(RAISED))
def test_each_error_class_has_its_code(channel, name):
    exc, code = RAISED[name]
    with pytest.raises(grpc.RpcError) as e:
        call(channel, "Unary", name.encode())
    assert e.value.code() is code
    assert e.value.details() == (exc.strerror if isinstance(exc, OSError) else str(exc))


@pytest.mark.parametrize("name", sorted(RAISED))
def test_errors_after_a_streamed_message_have_their_code(channel, name):
    responses = channel.unary_stream("/test.Fake/Stream")(name.encode(), timeout=10)
    assert next(responses) == b"first"
    with pytest.raises(grpc.RpcError) as e:
        next(responses)
    assert e.value.code() is RAISED[name][1]


def test_an_unexpected_exception_is_internal_in_one_line_without_traceback(channel):
    with pytest.raises(grpc.RpcError) as e:
        call(channel, "Unary", b"bug")
    assert e.value.code() is grpc.StatusCode.INTERNAL
    assert e.value.details() == "internal error: RuntimeError: disk at /x"
    assert "Traceback" not in e.value.details() and "\n" not in e.value.details()


def test_an_abort_passes_through_as_it_is(channel):
    with pytest.raises(grpc.RpcError) as e:
        call(channel, "Abort")
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.PERMISSION_DENIED, "not you")


@pytest.mark.parametrize("name", ["NotFound", "Conflict", "InvalidArgument", "Unsupported", "SystemFailure"])
def test_the_client_maps_codes_back_to_the_same_classes(channel, name):
    with pytest.raises(grpc.RpcError) as e:
        call(channel, "Unary", name.encode())
    back = from_rpc_error(e.value)
    assert type(back) is type(RAISED[name][0]) and str(back) == str(RAISED[name][0])


def test_already_exists_from_another_peer_is_a_conflict():
    class Err(grpc.RpcError):
        def code(self):
            return grpc.StatusCode.ALREADY_EXISTS

        def details(self):
            return "content sha256:… already exists"
    assert isinstance(from_rpc_error(Err()), errors.Conflict)


def test_a_missing_namespace_is_a_failed_precondition(channel):
    with pytest.raises(grpc.RpcError) as e:
        call(channel, "Namespace")
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "namespace is required")


@pytest.mark.parametrize("name", ["bad name", "-lead", "a" * 77, "version", "a..b"])
def test_an_invalid_namespace_is_an_invalid_argument(channel, name):
    with pytest.raises(grpc.RpcError) as e:
        call(channel, "Namespace", metadata=[(namespace.NAMESPACE_KEY, name)])
    assert e.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_the_namespaced_channel_carries_the_header(channel):
    assert client.namespaced(channel, "moby").unary_unary("/test.Fake/Namespace")(b"", timeout=10) == b"moby"
    # The wrapped channel's own header wins over one a caller passes.
    ns = client.namespaced(channel, "k8s.io")
    assert ns.unary_unary("/test.Fake/Namespace")(
        b"", timeout=10, metadata=[(namespace.NAMESPACE_KEY, "other")]) == b"k8s.io"


def test_connect_to_nobody_is_a_system_failure(tmp_path):
    with pytest.raises(errors.SystemFailure, match="not answering"):
        client.connect(str(tmp_path / "nobody.sock"), timeout=0.2)
