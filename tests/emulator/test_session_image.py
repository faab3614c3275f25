"""What a local-pool session offers beyond isolation, as the service's containers do: the CPU topology (joblib,
scikit-learn), a prebuilt matplotlib font list; and how much of its executions the pool keeps.
"""

from __future__ import annotations

import shutil
import sys

import pytest
from _pool_http import LIVE

from aca_kernel.emulator.runtime import SandboxConfig
from aca_kernel.emulator.sandbox import font_cache

pytestmark = [pytest.mark.emulator_only, pytest.mark.skipif(LIVE, reason="tests the emulator's sessions")]
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (bwrap)")


@needs_bwrap
async def test_sessions_see_the_cpu_topology_read_only(make_kernel) -> None:
    kernel = await make_kernel()
    code = ("import os, warnings, json\n"
            "warnings.simplefilter('error')\n"  # loky warns 'found 0 physical cores' without it
            "from joblib import cpu_count\n"
            "cores = cpu_count(only_physical_cores=True)\n"
            "try:\n"
            "    open('/sys/devices/system/cpu/online', 'w')\n"
            "    writable = True\n"
            "except OSError:\n"
            "    writable = False\n"
            "json.dumps([cores, os.path.exists('/sys/devices/system/cpu/online'), writable,"
            " sorted(os.listdir('/sys'))])")
    outcome = await kernel.execute(code, 60)
    assert outcome.status == "succeeded", outcome.stderr
    import json

    cores, online, writable, top = json.loads(outcome.result)
    assert cores >= 1 and online and not writable
    assert top == ["devices"]  # nothing else of the host's /sys


@needs_bwrap
async def test_the_first_plot_uses_the_prebuilt_font_list(make_kernel) -> None:
    pytest.importorskip("matplotlib")
    assert font_cache(sys.executable) is not None  # built once per machine (the pool starts it in the background)
    kernel = await make_kernel("fonts")
    code = ("import logging\nlogging.basicConfig(level=logging.INFO)\n"
            "import matplotlib.font_manager as fm, matplotlib, os\n"
            "sorted(os.listdir(matplotlib.get_cachedir()))")
    outcome = await kernel.execute(code, 120)
    assert outcome.status == "succeeded", outcome.stderr
    assert "generated new fontManager" not in outcome.stderr  # it was not rebuilt in the session
    assert "fontlist-" in outcome.result


def test_the_font_list_is_built_once_atomically(tmp_path, monkeypatch) -> None:
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    from aca_kernel.emulator import sandbox

    sandbox._font_cache_dir.cache_clear()
    try:
        assert font_cache(SandboxConfig().python, build=False) is None
        built = font_cache(SandboxConfig().python)
        assert built is not None and any(built.glob("fontlist-*.json"))
        assert [p.name for p in built.parent.iterdir()] == [built.name]  # no build folder left behind
        assert font_cache(SandboxConfig().python, build=False) == built
    finally:
        sandbox._font_cache_dir.cache_clear()


def _long_value(client, url: str, body: dict, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        r = client.post(url, json=body)
        assert r.status_code in (200, 202), r.text
        ids.append(r.json()["id"])
    return ids


def test_the_pool_keeps_a_bounded_record_of_executions(make_pool) -> None:
    import httpx

    from aca_kernel.emulator.backend import MAX_RECORD_CHARS

    pool = make_pool("--ready", "0")
    headers = {"Authorization": f"Bearer {pool.token}"}
    base = pool.endpoint.rstrip("/")
    with httpx.Client(headers=headers, timeout=60) as client:
        url = f"{base}/executions?api-version=2025-10-02-preview&identifier=records"
        body = {"code": "'x' * (8 << 20)", "codeInputType": "inline", "executionType": "synchronous"}
        ids = _long_value(client, url, body, (MAX_RECORD_CHARS >> 20) // 8 + 3)
        found = [client.get(f"{base}/executions/{i}?api-version=2025-10-02-preview&identifier=records").status_code
                 for i in ids]
        assert found[-1] == 200 and found[0] == 404  # the oldest were forgotten to stay within the bound
        kept = sum(1 for status in found if status == 200)
        assert 1 <= kept <= (MAX_RECORD_CHARS >> 20) // 8 + 1
        client.delete(f"{base}/session?api-version=2025-10-02-preview&identifier=records")
