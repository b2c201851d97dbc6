"""dockyardd's life, in the shape of every Dockyard daemon (uvicorn's): startup → serve → shutdown.

- startup: the data-root (0711) and exec-root (0711); one daemon per data-root (flock on the
  directory: the kernel drops it when we die); the pidfile (refused while the pid in it runs, as
  dockerd: "pid file found, ensure dockyardd is not running or delete …"); dockyard-containerd
  (--containerd, or our own one, started or found running: containerd.spawn_containerd); the
  Daemon and its components; then the listeners — unix sockets created 0660, group `dockyard`
  (-G) when that group exists, a stale socket replaced, a live one refused; TCP only with TLS
  and required client certificates (config.validate refuses anything else);
- serve: until SIGTERM or SIGINT (SIGHUP is logged and ignored: no reload yet);
- shutdown: stop accepting; cut what streams (attach, exec, logs -f, events, stats: their
  handlers are cancelled and their connections closed); give the other requests in flight
  `shutdown_timeout` seconds (a second signal cuts that short); close the components and the
  channel (containers keep running: live restore); remove the sockets and the pidfile.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import grp
import logging
import os
import signal
import socket
import ssl

from aiohttp import web

import dockyard
from dockyard import daemonfiles
from dockyard.errors import Conflict, InvalidArgument, SystemFailure

from . import containerd as containerd_module
from .api import build_app
from .api.middleware import INFLIGHT, TASK, streaming
from .config import Config, split_tcp
from .daemon import Daemon

log = logging.getLogger("dockyard.engine")

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _fields(**values) -> dict:
    return {"fields": values}




def unix_listener(path: str, group: str) -> socket.socket:
    """A listening unix socket at `path`, 0660 from its first instant, owned by `group` when
    that group exists (dockerd: -G docker)."""
    daemonfiles.make_dir(os.path.dirname(path), 0o711)
    if daemonfiles.claim_socket(path):
        log.info("removed stale socket", extra=_fields(path=path))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o117)
    try:
        sock.bind(path)
    except OSError as e:
        sock.close()
        raise SystemFailure(f"cannot listen on {path}: {e.strerror}") from None
    finally:
        os.umask(old)
    os.chmod(path, 0o660)
    gid = _group_id(group)
    if gid is not None:
        os.chown(path, 0, gid)
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _group_id(group: str) -> int | None:
    if not group:
        return None
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        if group.isdigit():
            return int(group)
        if group != "dockyard":
            log.warning("socket group does not exist", extra=_fields(group=group))
        return None


def tls_context(config: Config) -> ssl.SSLContext:
    """Server TLS demanding a client certificate signed by --tlscacert (dockerd --tlsverify)."""
    try:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=config.tlscacert)
        ctx.load_cert_chain(config.tlscert, config.tlskey)
    except (OSError, ssl.SSLError) as e:
        raise InvalidArgument(f"cannot load TLS files: {e}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class Server:
    def __init__(self, config: Config):
        self.config = config
        self.daemon: Daemon | None = None
        self._lock_fd: int | None = None
        self._pidfile_written = False
        self._runner: web.AppRunner | None = None
        self._sites: list[web.BaseSite] = []
        self._sockets: list[tuple[str, tuple[int, int]]] = []  # unix sockets we bound
        self._supervisor: containerd_module.Supervisor | None = None
        self._stop: asyncio.Event | None = None
        self._force = False

    async def run(self) -> None:
        self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in _STOP_SIGNALS:
            loop.add_signal_handler(sig, self.request_exit, sig)
        loop.add_signal_handler(signal.SIGHUP, lambda: log.info("SIGHUP: configuration reload is not supported"))
        try:
            await self.startup()
            await self._stop.wait()
        finally:
            await self.shutdown()
            for sig in (*_STOP_SIGNALS, signal.SIGHUP):
                loop.remove_signal_handler(sig)

    def request_exit(self, sig: int | None = None) -> None:
        if sig is not None:
            log.info("received signal", extra=_fields(signal=signal.Signals(sig).name))
        if self._stop.is_set():
            self._force = True
        self._stop.set()

    # -- startup ---------------------------------------------------------------------------------

    async def startup(self) -> None:
        cfg = self.config
        log.info("starting dockyardd", extra=_fields(version=dockyard.__version__, data_root=cfg.data_root,
                                                      exec_root=cfg.exec_root))
        daemonfiles.make_dir(cfg.data_root, 0o711)
        daemonfiles.make_dir(cfg.exec_root, 0o711)
        self._lock_data_root()
        self._write_pidfile()
        ssl_ctx = tls_context(cfg) if any(h.startswith("tcp://") for h in cfg.hosts) else None
        pid = None
        if cfg.managed_containerd:
            pid = await containerd_module.spawn_containerd(cfg)
        self.daemon = Daemon(cfg)
        await self.daemon.start()
        if cfg.managed_containerd:
            self._supervisor = containerd_module.Supervisor(cfg, pid)
            self._supervisor.start()
        app = build_app(self.daemon)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0,
                                     access_log=log if cfg.effective_log_level == "debug" else None)
        await self._runner.setup()
        for host in cfg.hosts:
            if host.startswith("unix://"):
                path = host.removeprefix("unix://")
                sock = unix_listener(path, cfg.group)
                st = os.lstat(path)
                self._sockets.append((path, (st.st_dev, st.st_ino)))
                site = web.SockSite(self._runner, sock)
            else:
                name, port = split_tcp(host)
                site = web.TCPSite(self._runner, name, port, ssl_context=ssl_ctx, reuse_address=True)
            try:
                await site.start()
            except OSError as e:
                raise SystemFailure(f"cannot listen on {host}: {e.strerror or e}") from None
            self._sites.append(site)
        log.info("serving", extra=_fields(hosts=",".join(cfg.hosts), pid=os.getpid()))

    def _lock_data_root(self) -> None:
        fd = os.open(self.config.data_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Conflict(f"another dockyardd is using data-root {self.config.data_root}") from None
        self._lock_fd = fd

    def _write_pidfile(self) -> None:
        path = self.config.pidfile_path
        with contextlib.suppress(FileNotFoundError, ValueError):
            with open(path) as f:
                pid = int(f.read().strip() or "0")
            if pid and pid != os.getpid() and _running(pid):
                raise Conflict(f"pid file found, ensure dockyardd is not running or delete {path}")
        daemonfiles.make_dir(os.path.dirname(path), 0o711)
        with open(path + ".tmp", "w") as f:
            f.write(f"{os.getpid()}")
        os.replace(path + ".tmp", path)
        self._pidfile_written = True

    # -- shutdown --------------------------------------------------------------------------------

    async def shutdown(self) -> None:
        log.info("stopping")
        for site in self._sites:
            with contextlib.suppress(Exception):
                await site.stop()
        self._sites.clear()
        self._remove_sockets()
        if self._runner is not None:
            await self._drain(self._runner.app)
            await self._runner.cleanup()
            self._runner = None
        if self._supervisor is not None:
            await self._supervisor.close()
        if self.daemon is not None:
            await self.daemon.close()
            self.daemon = None
        self._remove_pidfile()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        log.info("stopped")

    async def _drain(self, app: web.Application) -> None:
        """Cuts the streams, then waits for the other requests in flight (up to the timeout,
        or until a second signal)."""
        inflight = app[INFLIGHT]
        for request in list(inflight.values()):
            if streaming(request):
                request[TASK].cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.shutdown_timeout
        while inflight and loop.time() < deadline and not self._force:
            await asyncio.sleep(0.05)
            for request in list(inflight.values()):  # a request that started streaming meanwhile
                if streaming(request):
                    request[TASK].cancel()
        for request in list(inflight.values()):
            log.warning("cancelling a request still in flight", extra=_fields(path=request.path))
            request[TASK].cancel()
        for _ in range(20):
            if not inflight:
                break
            await asyncio.sleep(0.05)

    def _remove_sockets(self) -> None:
        for path, ident in self._sockets:
            with contextlib.suppress(FileNotFoundError):
                st = os.lstat(path)
                if (st.st_dev, st.st_ino) == ident:
                    os.unlink(path)
        self._sockets.clear()

    def _remove_pidfile(self) -> None:
        if not self._pidfile_written:
            return
        path = self.config.pidfile_path
        with contextlib.suppress(OSError, ValueError):
            with open(path) as f:
                if int(f.read().strip()) == os.getpid():
                    os.unlink(path)
        self._pidfile_written = False


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

