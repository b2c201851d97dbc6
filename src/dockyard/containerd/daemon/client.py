"""Connecting to dockyard-containerd: for dockyardd, dockyard-ctr and the tests.

    channel = client.connect("/run/dockyard/containerd/containerd.sock")
    containers = ContainersStub(client.namespaced(channel, "moby"))
    try:
        containers.Get(GetContainerRequest(id="web"))
    except grpc.RpcError as e:
        raise client.from_rpc_error(e)      # NotFound, Conflict, … (daemon.errors)
"""

import grpc

from dockyard.errors import SystemFailure

from .config import DEFAULT_ADDRESS, GRPC_OPTIONS
from .errors import from_rpc_error
from .namespace import NAMESPACE_KEY

__all__ = ["connect", "namespaced", "from_rpc_error", "NAMESPACE_KEY"]


def connect(address: str = DEFAULT_ADDRESS, timeout: float | None = 10.0) -> grpc.Channel:
    """A channel to the daemon on the unix socket `address`. With a timeout, waits that long for
    the daemon to answer and raises SystemFailure if it does not; with None, returns at once and
    the first call finds out."""
    channel = grpc.insecure_channel(f"unix:{address}", options=GRPC_OPTIONS)
    if timeout is not None:
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            channel.close()
            raise SystemFailure(f"dockyard-containerd is not answering on {address}") from None
    return channel


class _Namespace(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                 grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    def __init__(self, namespace: str):
        self._header = (NAMESPACE_KEY, namespace)

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = [m for m in (details.metadata or ()) if m[0] != NAMESPACE_KEY] + [self._header]
        return _CallDetails(details.method, details.timeout, metadata, details.credentials,
                            details.wait_for_ready, details.compression)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, method, timeout, metadata, credentials, wait_for_ready, compression):
        self.method, self.timeout, self.metadata = method, timeout, metadata
        self.credentials, self.wait_for_ready, self.compression = credentials, wait_for_ready, compression


def namespaced(channel: grpc.Channel, namespace: str) -> grpc.Channel:
    """`channel` with every call carrying `namespace` in the `containerd-namespace` header."""
    return grpc.intercept_channel(channel, _Namespace(namespace))
