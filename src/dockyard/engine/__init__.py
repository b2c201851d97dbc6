"""dockyardd, the engine (dockerd's role in DESIGN.md): it serves the Docker Engine API on a
unix socket (and TCP with mutual TLS) and drives dockyard-containerd over gRPC.

Rooms:
- `config`, `cli` — dockerd's flags and daemon.json keys, one `Config`;
- `server` — the process: startup, serve, graceful stop; `containerd` — the gRPC channel to
  dockyard-containerd, and starting our own one;
- `daemon` — the components behind the API (store, events, images, containers, execs,
  restarts, health), built in order;
- `api/` — the HTTP side: one router module per resource, the middleware, httputil;
- pure modules (no I/O): streams, filters, names, state, jsonmessage, timeutil.

`main()` is the `dockyardd` console script:

    dockyardd [-H unix:///run/dockyard/dockyard.sock] [--data-root DIR] [--exec-root DIR]
              [--containerd SOCK] [--config-file FILE] [--log-level L] …

It serves until SIGTERM or SIGINT, then stops gracefully (containers keep running) and exits 0;
it exits 1 with one line on stderr when it cannot start.
"""

import os
import sys

# Before grpc is imported: children we fork only exec (see dockyard.containerd.daemon).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")


def main(argv: list[str] | None = None) -> int:
    import asyncio
    import logging

    import dockyard
    from dockyard.containerd.daemon import log as log_module
    from dockyard.errors import DockyardError

    from . import cli
    from .server import Server

    try:
        args, config = cli.parse(argv)
    except DockyardError as e:
        print(f"dockyardd: {e}", file=sys.stderr)
        return 1
    if config is None:
        print(f"Dockyard version {dockyard.__version__}")
        return 0
    log_module.configure(config.effective_log_level)
    for noisy in ("grpc._cython.cygrpc", "asyncio"):  # their debug lines are not ours
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLogger().level))
    log = logging.getLogger("dockyard.engine")
    try:
        asyncio.run(Server(config).run())
    except DockyardError as e:
        log.error(str(e))
        return 1
    except OSError as e:
        message = f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}"
        log.error(message)
        return 1
    return 0
