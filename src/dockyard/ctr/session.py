"""The connection to dockyard-containerd: one channel, opened on first use, carrying the
namespace header; a stub per service whose calls raise `dockyard.errors` instead of
grpc.RpcError (daemon.errors decides the mapping).

A service the daemon does not serve yet answers UNIMPLEMENTED with gRPC's own "Method not
found!": that becomes Unsupported("dockyard-containerd does not serve Tasks yet"), told apart
from an UNIMPLEMENTED a served call answers on purpose (Unsupported raised by the daemon)."""

import os

import grpc

from dockyard.containerd.daemon import client
from dockyard.errors import SystemFailure, Unsupported

_NO_SUCH_METHOD = "Method not found!"


def _error(service: str, err: grpc.RpcError) -> Exception:
    if err.code() is grpc.StatusCode.UNIMPLEMENTED and err.details() == _NO_SUCH_METHOD:
        return Unsupported(f"dockyard-containerd does not serve {service} yet")
    return client.from_rpc_error(err)


class _Stub:
    """A service's stub whose calls raise dockyard.errors; streaming calls (server or
    bidirectional: pass an iterator of requests) return a generator that does the same while
    it is iterated, and cancels the call when it is closed."""

    def __init__(self, service: str, stub):
        self._service, self._stub = service, stub

    def __getattr__(self, method: str):
        callable_ = getattr(self._stub, method)
        service = self._service

        def call(request, **kwargs):
            try:
                response = callable_(request, **kwargs)
            except grpc.RpcError as e:
                raise _error(service, e) from None
            if isinstance(callable_, (grpc.UnaryStreamMultiCallable, grpc.StreamStreamMultiCallable)):
                return _stream(service, response)
            return response
        return call


def _stream(service: str, responses):
    try:
        yield from responses
    except grpc.RpcError as e:
        raise _error(service, e) from None
    finally:
        responses.cancel()  # closed early: the daemon lets go (nothing once the call is over)


class Session:
    def __init__(self, address: str, namespace: str, connect_timeout: float = 10.0):
        self.address = address
        self.namespace = namespace
        self.connect_timeout = connect_timeout
        self._channel: grpc.Channel | None = None
        self._namespaced: grpc.Channel | None = None
        self._stubs: dict[str, _Stub] = {}

    def _connect(self) -> grpc.Channel:
        if self._channel is None:
            # A missing socket fails at once rather than after the connect timeout.
            if not os.path.exists(self.address):
                raise SystemFailure(f"cannot connect to dockyard-containerd: {self.address} does not exist")
            self._channel = client.connect(self.address, timeout=self.connect_timeout)
            self._namespaced = client.namespaced(self._channel, self.namespace)
        return self._namespaced

    def _stub(self, service: str, module) -> _Stub:
        if service not in self._stubs:
            self._stubs[service] = _Stub(service, getattr(module, f"{service}Stub")(self._connect()))
        return self._stubs[service]

    # One property per service; each imports its generated module only when used.

    @property
    def version(self) -> _Stub:
        from dockyard.api.services.version.v1 import version_pb2_grpc
        return self._stub("Version", version_pb2_grpc)

    @property
    def namespaces(self) -> _Stub:
        from dockyard.api.services.namespaces.v1 import namespaces_pb2_grpc
        return self._stub("Namespaces", namespaces_pb2_grpc)

    @property
    def containers(self) -> _Stub:
        from dockyard.api.services.containers.v1 import containers_pb2_grpc
        return self._stub("Containers", containers_pb2_grpc)

    @property
    def content(self) -> _Stub:
        from dockyard.api.services.content.v1 import content_pb2_grpc
        return self._stub("Content", content_pb2_grpc)

    @property
    def snapshots(self) -> _Stub:
        from dockyard.api.services.snapshots.v1 import snapshots_pb2_grpc
        return self._stub("Snapshots", snapshots_pb2_grpc)

    @property
    def images(self) -> _Stub:
        from dockyard.api.services.images.v1 import images_pb2_grpc
        return self._stub("Images", images_pb2_grpc)

    @property
    def tasks(self) -> _Stub:
        from dockyard.api.services.tasks.v1 import tasks_pb2_grpc
        return self._stub("Tasks", tasks_pb2_grpc)

    @property
    def transfer(self) -> _Stub:
        from dockyard.api.services.transfer.v1 import transfer_pb2_grpc
        return self._stub("Transfer", transfer_pb2_grpc)
