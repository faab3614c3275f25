"""Contract tests that need a private emulator with special settings (``make_pool``), or big transfers."""

from __future__ import annotations

import tracemalloc
import uuid

import pytest

import aca_kernel

from .conftest import V1, V2


def test_pool_at_its_session_limit_is_a_clear_404(make_pool, make_client):
    pool = make_pool("--max-sessions", "1", "--ready", "0")
    first = make_client(pool.endpoint, pool.token, api_version=V2)
    first.upload_file(b"x", "a.txt")
    second = make_client(pool.endpoint, pool.token, api_version=V2)
    with pytest.raises(aca_kernel.ResourceNotFoundError) as info:
        second.list_files()
    assert info.value.status_code == 404
    assert "session limit" in str(info.value) and second.session_id in str(info.value)


@pytest.mark.parametrize("api_version", [V1, V2])
def test_service_side_timeout_is_a_failed_result(make_pool, make_client, api_version):
    pool = make_pool("--timeout", "2", "--ready", "1")
    client = make_client(pool.endpoint, pool.token, api_version=api_version)
    result = client.execute("import time\ntime.sleep(60)")
    assert result.status == "failed"
    assert "timed out" in result.stderr


@pytest.mark.parametrize("api_version", [V1, V2])
def test_transfers_stream_without_holding_the_file(pool, make_client, api_version, tmp_path):
    """Upload and download 48 MB while Python-level allocations stay far below the file size."""
    size = 48 * 1024 * 1024
    src = tmp_path / "big.bin"
    with open(src, "wb") as f:
        f.truncate(size)
    client = make_client(pool.endpoint, pool.token, api_version=api_version, session_id=f"big-{uuid.uuid4()}")
    ticks: list[int] = []
    tracemalloc.start()
    try:
        uploaded = client.upload_file(src, "big.bin", progress=lambda done, total: ticks.append(done))
        _, upload_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        dest = tmp_path / "back.bin"
        written = client.download_file("big.bin", dest)
        _, download_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert uploaded.size == size and written == size and dest.stat().st_size == size
    assert len(ticks) > 100 and ticks[-1] == size
    assert upload_peak < 8 * 1024 * 1024, upload_peak
    assert download_peak < 8 * 1024 * 1024, download_peak
