"""The namespace of a call. It travels as gRPC metadata `containerd-namespace`, the key
containerd uses, so the wire looks familiar (runtime-and-containerd.md §4.9). Every namespaced
service asks for it first; Version, Namespaces and Events.Subscribe do not need one."""

import grpc

from dockyard.containerd.identifiers import validate_namespace

NAMESPACE_KEY = "containerd-namespace"


def required(context: grpc.ServicerContext) -> str:
    """The call's namespace: FAILED_PRECONDITION when it has none (as containerd answers),
    INVALID_ARGUMENT when the name is not a valid identifier."""
    name = next((value for key, value in context.invocation_metadata() if key == NAMESPACE_KEY), "")
    if not name:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "namespace is required")
    return validate_namespace(name)
