"""Redis goes away and comes back: the write path keeps every accepted point."""

from __future__ import annotations

import numpy as np
import pytest
import redis

from skyline.store.hotstore import HotStore
from skyline.store.redis_client import make_client
from skyline.store.writer import PointBuffer
from tests.conftest import free_port
from tests.redisproc import RedisProcess


@pytest.fixture
def server(tmp_path):
    proc = RedisProcess(tmp_path / "redis", free_port())
    proc.start()
    yield proc
    proc.stop()


def test_points_accepted_while_redis_is_down_are_written_after_it_returns(server):
    client = make_client(server.url, timeout=1.0)
    buf = PointBuffer(HotStore(client), max_points=1000)
    for i in range(10):
        assert buf.add("svc.requests", 1000.0 + i, float(i))
    assert buf.flush() == 10

    server.stop()
    for i in range(10, 20):
        assert buf.add("svc.requests", 1000.0 + i, float(i))
    with pytest.raises(redis.ConnectionError):
        buf.flush()
    assert len(buf) == 10 and buf.failed_flushes == 1
    buf.add("svc.errors", 2000.0, 1.0)  # still accepting meanwhile

    server.start()
    assert buf.flush() == 11
    series = HotStore(client).read_one("svc.requests")
    assert series.timestamps.tolist() == [1000.0 + i for i in range(20)]
    assert series.values.tolist() == [float(i) for i in range(20)]
    assert HotStore(client).read_one("svc.errors").values.tolist() == [1.0]
    client.close()


def test_full_buffer_refuses_new_points_and_keeps_old_ones(server):
    client = make_client(server.url, timeout=1.0)
    buf = PointBuffer(HotStore(client), max_points=5)
    assert buf.add_many(["m"] * 7, list(np.arange(7.0)), [1.0] * 7) == 5
    assert buf.refused == 2
    assert not buf.add("m", 99.0, 1.0)
    assert buf.flush() == 5
    assert len(HotStore(client).read_one("m")) == 5
    client.close()
