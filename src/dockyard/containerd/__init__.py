"""dockyard-containerd, the lifecycle manager (containerd's role in DESIGN.md): it owns
containers, tasks, the content store, snapshots, images, leases and events, per namespace, and
serves them over gRPC on a unix socket to dockyardd, dockyard-ctr and later kubelet (CRI).

Rooms:
- the stores, pure of gRPC: `metadata` (SQLite: namespaces, containers, images, leases),
  `content` (content-addressed blobs, resumable ingests), `snapshots` (overlayfs), `gc`;
  with `identifiers` and `filters` validating what clients send;
- `daemon/` — the process around them: config, the gRPC server and its services, the error
  mapping, the client helper.

`main()` is the `dockyard-containerd` console script:

    dockyard-containerd [--address SOCK] [--root DIR] [--state DIR] [--config FILE] [--log-level L]

It serves until SIGTERM or SIGINT, drains the calls in flight and exits 0; it exits 1 with one
line on stderr when it cannot start (bad config, another daemon on the socket or the root).
"""


def main(argv: list[str] | None = None) -> int:
    # Imported here so that importing a store does not load grpc.
    from .daemon.server import main as serve
    return serve(argv)
