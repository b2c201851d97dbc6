"""The dockyard-containerd daemon's frame: what turns the stores of `dockyard.containerd` into a
gRPC server on a unix socket.

- `config` — one `Config`: defaults, then the TOML file (`--config`), then the flags;
- `server` — the life of the process: start (directories, the socket), serve, drain, stop;
- `errors` — `dockyard.errors` ↔ gRPC status codes, both ways, in one place;
- `namespace` — the `containerd-namespace` header every namespaced call carries;
- `services/` — one module per gRPC service; only implemented services are registered;
- `client` — connecting to the daemon, for dockyardd, dockyard-ctr and the tests.
"""

import os

# gRPC's fork support re-creates its threads in a forked child, so a child that is meant to be
# single-threaded (a container's init, a seccomp-filtered process) is not. We only ever fork to
# exec; set before grpc is first imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
