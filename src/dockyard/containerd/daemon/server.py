"""dockyard-containerd's life, in uvicorn's shape: `Server.run()` is startup → serve → shutdown.

- startup: create the root (0711) and state (0711) directories, take the root's lock (one
  daemon per root), claim the socket (refuse when a daemon answers on it, remove it when stale),
  open the metadata database, register the implemented services, bind the socket 0600, serve;
- serve: until SIGTERM or SIGINT;
- shutdown: refuse new calls, give calls in flight `shutdown_timeout` seconds (a second signal
  cuts that short), remove the socket, close the database, release the lock. The previous signal handlers are
  restored on the way out.
"""

import contextlib
import fcntl
import logging
import os
import signal
import sys
import threading
from concurrent import futures

import grpc

import dockyard
from dockyard.containerd.daemon.backends import Backends
from dockyard import daemonfiles
from dockyard.errors import Conflict, DockyardError, SystemFailure

from . import config as config_module
from . import log as log_module
from . import services
from .errors import ErrorInterceptor
from .log import fields

log = logging.getLogger("dockyard.containerd")

# Every call in flight holds a thread: long ones (Tasks.Wait, Events.Subscribe) sit there until
# their process exits or their client leaves, one per running container for the engine's Waits.
# The pool grows on demand, so a high ceiling costs nothing until it is used.
MAX_WORKERS = 256
_DRAIN_POLL = 0.05
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)




class Server:
    def __init__(self, config: config_module.Config):
        self.config = config
        self._grpc: grpc.Server | None = None
        self._root_fd: int | None = None
        self._backends: Backends | None = None
        self._socket_id: tuple[int, int] | None = None  # (st_dev, st_ino) of the socket we bound
        self._should_exit = threading.Event()
        self._force_exit = threading.Event()

    def run(self) -> None:
        with self._signal_handlers():
            try:
                self.startup()
                self.serve()
            finally:
                self.shutdown()

    def startup(self) -> None:
        cfg = self.config
        log.info("starting dockyard-containerd", extra=fields(
            version=dockyard.__version__, address=cfg.address, root=cfg.root, state=cfg.state))
        # 0711: shims and containers must be able to traverse into bundles and snapshots under
        # them (a user-namespaced container's root is not our root), but not to list them.
        daemonfiles.make_dir(cfg.state, 0o711)
        daemonfiles.make_dir(cfg.root, 0o711)
        daemonfiles.make_dir(os.path.dirname(cfg.address), 0o700)
        self._lock_root()
        if daemonfiles.claim_socket(cfg.address):
            log.info("removed stale socket", extra=fields(address=cfg.address))
        self._backends = Backends(cfg.root, cfg.state)

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=MAX_WORKERS,
                                                        thread_name_prefix="grpc"),
                             interceptors=[ErrorInterceptor()], options=config_module.GRPC_OPTIONS)
        names = services.register(server, self._backends)
        self._bind(server, cfg.address)
        self._grpc = server
        server.start()
        log.info("serving", extra=fields(address=cfg.address, services=",".join(names)))

    def _lock_root(self) -> None:
        # One daemon per root: two would race each other over meta.db, blobs and snapshots.
        # flock on the directory itself leaves no lock file behind; the kernel drops it when we die.
        fd = os.open(self.config.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Conflict(f"another dockyard-containerd is using root {self.config.root}") from None
        self._root_fd = fd

    def _bind(self, server: grpc.Server, path: str) -> None:
        # gRPC creates the socket file itself: the umask makes it 0600 from its first instant,
        # the chmod whatever the umask did.
        old = os.umask(0o177)
        try:
            server.add_insecure_port(f"unix:{path}")
        except RuntimeError as e:
            raise SystemFailure(f"cannot listen on {path}: {e}") from None
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        st = os.lstat(path)
        self._socket_id = (st.st_dev, st.st_ino)

    def serve(self) -> None:
        self._should_exit.wait()

    def shutdown(self) -> None:
        if self._grpc is not None:
            log.info("stopping: draining calls in flight",
                     extra=fields(timeout=self.config.shutdown_timeout))
            if self._backends is not None:
                self._backends.events.close()  # subscriptions never end on their own
            drained = self._grpc.stop(self.config.shutdown_timeout)
            while not drained.wait(_DRAIN_POLL):
                if self._force_exit.is_set():
                    self._grpc.stop(None)
            self._grpc = None
            log.info("stopped")
        self._remove_socket()
        if self._backends is not None:
            self._backends.close()
            self._backends = None
        if self._root_fd is not None:
            os.close(self._root_fd)
            self._root_fd = None

    def _remove_socket(self) -> None:
        # Only the socket we bound: after a refused start the one there belongs to another daemon.
        if self._socket_id is None:
            return
        path = self.config.address
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(path)
            if (st.st_dev, st.st_ino) == self._socket_id:
                os.unlink(path)
        self._socket_id = None

    def request_exit(self, signum: int | None = None) -> None:
        """Stops the server gracefully; a second request cuts the drain short."""
        if self._should_exit.is_set():
            self._force_exit.set()
        self._should_exit.set()
        if signum is not None:
            log.info("received signal", extra=fields(signal=signal.Signals(signum).name))

    @contextlib.contextmanager
    def _signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            yield  # only the main thread may install handlers; an embedding caller stops us itself
            return
        previous = {sig: signal.signal(sig, lambda signum, frame: self.request_exit(signum))
                    for sig in _STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    args = config_module.build_parser().parse_args(argv)
    if args.version:
        from .services.version import source_revision
        print(f"dockyard-containerd {dockyard.__version__} {source_revision()}")
        return 0
    try:
        config = config_module.load(args)
    except DockyardError as e:
        print(f"dockyard-containerd: {e}", file=sys.stderr)
        return 1
    log_module.configure(config.log_level)
    try:
        Server(config).run()
    except DockyardError as e:
        log.error(str(e))
        return 1
    except OSError as e:
        log.error(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}")
        return 1
    return 0
