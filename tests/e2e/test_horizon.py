"""The real `skyline` command receiving metrics from real clients: graphyte (Graphite
plaintext, TCP and UDP), the statsd package, msgpack datagrams, and a real carbon-relay
forwarding to the pickle port."""

from __future__ import annotations

import importlib.util
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import graphyte
import msgpack
import pytest
import statsd

from skyline.settings import load_settings
from skyline.store.hotstore import HotStore
from skyline.store.redis_client import redis_session
from tests.conftest import free_port, skip_or_fail
from tests.e2e.skylineproc import Running, env_for


def wait_tcp(run: Running, port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if run.proc.poll() is not None:
            run.finish()
            raise AssertionError(f"skyline exited {run.proc.returncode}: {run.stderr}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {port}"
            time.sleep(0.1)


def wait_stored(data_dir: Path, check: Callable[[HotStore], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    with redis_session(load_settings(DATA_DIR=data_dir)) as h:
        store = HotStore(h.client)
        while not check(store):
            assert time.monotonic() < deadline, f"not stored in time; have {store.names()}"
            time.sleep(0.2)


def values(store: HotStore, name: str) -> list[float]:
    return store.read_one(name).values.tolist()


def test_run_receives_graphite_statsd_and_msgpack_from_real_clients(tmp_path):
    data = tmp_path / "var"
    env = env_for(data, free_port(), SKYLINE_STATSD__FLUSH_INTERVAL="1")
    run = Running(env, tmp_path)
    try:
        wait_tcp(run, int(env["SKYLINE_HORIZON__PLAINTEXT_PORT"]))
        _send_from_clients_and_check(env, data)
    finally:
        assert run.stop(signal.SIGINT) == 0
    assert "Traceback" not in run.stderr
    for setting in ("horizon.plaintext_port", "PICKLE_PORT", "UDP_PORT", "horizon.statsd_port"):
        assert setting in run.stdout  # the banner lists every listener


def _send_from_clients_and_check(env: dict[str, str], data: Path) -> None:
    tcp = int(env["SKYLINE_HORIZON__PLAINTEXT_PORT"])
    now = time.time()

    g = graphyte.Sender("127.0.0.1", port=tcp, prefix="e2e.graphyte", raise_send_errors=True)
    g.send("tcp", 1.5, timestamp=now - 60)
    g.send("tcp", 2.5, timestamp=now)
    g.send("tagged", 7, timestamp=now, tags={"dc": "eu-1", "host": "web01"})
    batched = graphyte.Sender("127.0.0.1", port=tcp, prefix="e2e.batched", interval=0.1)
    for i in range(500):  # one connection carries many lines
        batched.send(f"m{i % 10}", i, timestamp=now - 500 + i)
    batched.stop()
    udp = graphyte.Sender("127.0.0.1", port=int(env["SKYLINE_HORIZON__PLAINTEXT_UDP_PORT"]),
                          prefix="e2e.graphyte", protocol="udp")
    udp.send("udp", 3, timestamp=now)

    sd = statsd.StatsClient("127.0.0.1", int(env["SKYLINE_HORIZON__STATSD_PORT"]), prefix="e2e")
    with sd.pipeline() as pipe:  # several lines in one datagram, as the client batches them
        pipe.incr("hits", 4)
        pipe.timing("latency", 120)
        pipe.timing("latency", 80)
    sd.gauge("queue", 10)
    sd.gauge("queue", -3, delta=True)
    sd.set("users", "alice")

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(msgpack.packb(["e2e.msgpack", [now, 9.0]]),
                 ("127.0.0.1", int(env["SKYLINE_UDP_PORT"])))

    def all_there(store: HotStore) -> bool:
        names = set(store.names())
        return {"e2e.graphyte.tcp", 'e2e.graphyte.tagged{dc="eu-1",host="web01"}',
                "e2e.graphyte.udp", "e2e.msgpack", "stats.counters.e2e.hits.count",
                "stats.timers.e2e.latency.mean", "stats.gauges.e2e.queue",
                "stats.sets.e2e.users.count"} <= names and all(
            len(store.read_one(f"e2e.batched.m{i}").values) == 50 for i in range(10))

    wait_stored(data, all_there)
    with redis_session(load_settings(DATA_DIR=data)) as h:
        store = HotStore(h.client)
        assert values(store, "e2e.graphyte.tcp") == [1.5, 2.5]
        assert values(store, "e2e.msgpack") == [9.0]
        assert values(store, "stats.counters.e2e.hits.count")[0] == 4
        assert values(store, "stats.timers.e2e.latency.mean")[0] == 100
        assert values(store, "stats.gauges.e2e.queue")[0] == 7
        assert values(store, "e2e.batched.m3") == [float(i) for i in range(3, 500, 10)]


def _carbon_relay() -> Path:
    if importlib.util.find_spec("carbon") is None:
        skip_or_fail("the carbon package (carbon-relay) is not installed; pip install "
                     "'.[dev]' installs it on Python < 3.12")
    script = Path(sys.executable).parent / "carbon-relay.py"
    found = script if script.exists() else shutil.which("carbon-relay.py")
    if found is None:
        skip_or_fail("carbon-relay.py is not on PATH")
    return Path(str(found))


@pytest.mark.system
def test_carbon_relay_forwards_plaintext_to_the_pickle_port(tmp_path):
    relay = _carbon_relay()
    data = tmp_path / "var"
    env = env_for(data, free_port())
    pickle_port = int(env["SKYLINE_PICKLE_PORT"])
    run = Running(env, tmp_path, "serve", "horizon")
    try:
        wait_tcp(run, pickle_port)
        _relay_to(run, relay, tmp_path, data, env, pickle_port)
    finally:
        assert run.stop() == 0
    assert "Traceback" not in run.stderr


def _relay_to(run: Running, relay: Path, tmp_path: Path, data: Path, env: dict[str, str],
              pickle_port: int) -> None:
    root = tmp_path / "graphite"
    conf, storage = root / "conf", root / "storage"
    for d in (conf, storage / "log", storage / "whisper"):
        d.mkdir(parents=True)
    line_port = free_port()
    (conf / "carbon.conf").write_text(f"""[relay]
LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = {line_port}
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_PORT = {free_port()}
ENABLE_UDP_LISTENER = False
RELAY_METHOD = rules
DESTINATIONS = 127.0.0.1:{pickle_port}
DESTINATION_PROTOCOL = pickle
MAX_QUEUE_SIZE = 10000
USE_FLOW_CONTROL = False
MAX_DATAPOINTS_PER_MESSAGE = 100
STORAGE_DIR = {storage}
LOCAL_DATA_DIR = {storage / 'whisper'}
LOG_DIR = {storage / 'log'}
PID_DIR = {storage}
""")
    (conf / "relay-rules.conf").write_text(
        f"[default]\ndefault = true\ndestinations = 127.0.0.1:{pickle_port}\n")
    (conf / "storage-schemas.conf").write_text("[default]\npattern = .*\nretentions = 60s:1d\n")
    proc = subprocess.Popen(
        [sys.executable, str(relay), f"--config={conf / 'carbon.conf'}", "--nodaemon", "start"],
        # carbon ships protobuf code generated for protobuf 3; the pure-Python protobuf
        # implementation still loads it
        cwd=root, env={**env, "GRAPHITE_ROOT": str(root),
                       "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", line_port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.communicate(timeout=5)[0] if proc.poll() is not None else ""
                    skip_or_fail(f"carbon-relay did not start: {out[-2000:]}")
                time.sleep(0.2)
        now = int(time.time())
        g = graphyte.Sender("127.0.0.1", port=line_port, prefix="relayed", interval=0.1)
        for i in range(250):  # more than one pickle frame (MAX_DATAPOINTS_PER_MESSAGE)
            g.send(f"m{i % 5}", i * 0.5, timestamp=now - 250 + i)
        g.stop()
        wait_stored(data, lambda store: sum(
            len(store.read_one(f"relayed.m{k}").values) for k in range(5)) == 250)
        with redis_session(load_settings(DATA_DIR=data)) as h:
            series = HotStore(h.client).read_one("relayed.m2")
            assert series.values.tolist() == [i * 0.5 for i in range(2, 250, 5)]
            assert series.timestamps.tolist() == [float(now - 250 + i) for i in range(2, 250, 5)]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
