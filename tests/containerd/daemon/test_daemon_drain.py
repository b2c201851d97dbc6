"""Shutdown drains calls in flight, in-process so a slow fake service can be served: SIGTERM
lets a call finish within shutdown_timeout; a second one cuts the wait short."""

import os
import threading
import time

import grpc
import pytest

from dockyard.containerd.daemon import server as server_module
from dockyard.containerd.daemon.config import Config

FAST_RECONNECT = [("grpc.initial_reconnect_backoff_ms", 20), ("grpc.min_reconnect_backoff_ms", 20),
                  ("grpc.max_reconnect_backoff_ms", 50)]


@pytest.fixture
def slow_server(base, monkeypatch):
    """A Server whose only service is test.Slow/Call, which returns once `release` is set."""
    release = threading.Event()
    entered = threading.Event()

    def call(request, context):
        entered.set()
        release.wait(timeout=30)
        return b"done"

    def register(grpc_server, db):
        grpc_server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
            "test.Slow", {"Call": grpc.unary_unary_rpc_method_handler(call)})])
        return ["slow"]

    monkeypatch.setattr(server_module.services, "register", register)
    config = Config(address=os.path.join(base, "s.sock"), root=os.path.join(base, "root"),
                    state=os.path.join(base, "state"), shutdown_timeout=30)
    server = server_module.Server(config)
    runner = threading.Thread(target=server.run)
    runner.start()
    channel = grpc.insecure_channel(f"unix:{config.address}", options=FAST_RECONNECT)
    grpc.channel_ready_future(channel).result(timeout=10)
    pending = channel.unary_unary("/test.Slow/Call").future(b"", timeout=30)
    assert entered.wait(10)
    yield server, runner, pending, release, config
    release.set()
    runner.join(10)
    channel.close()


def test_a_call_in_flight_finishes_during_a_graceful_stop(slow_server):
    server, runner, pending, release, config = slow_server
    server.request_exit()
    time.sleep(0.2)
    assert runner.is_alive() and not pending.done()  # draining, waiting for the call
    release.set()
    assert pending.result(timeout=10) == b"done"
    runner.join(10)
    assert not runner.is_alive()
    assert not os.path.exists(config.address)


def test_a_second_stop_request_cuts_the_drain_short(slow_server):
    server, runner, pending, release, config = slow_server
    server.request_exit()
    server.request_exit()
    runner.join(10)
    assert not runner.is_alive()
    with pytest.raises(grpc.RpcError):
        pending.result(timeout=10)
    assert not os.path.exists(config.address)
