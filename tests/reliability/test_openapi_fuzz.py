"""The OpenAPI fuzz run: schemathesis against the pool's own description, one api-version at a time.

Every check of schemathesis runs (no 5xx, status codes, content types, headers and bodies that match the
schema, valid requests accepted, invalid ones refused) except one: a method a path does not have is answered
400 SessionRequestValidationFailed, as the service does [OBSERVED], not 405 (docs/emulator.md). Bounded: a few
examples per operation (10), a fixed seed, a time limit; the pool is private, with a short cooldown and few sessions.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _pool_http import V1, V2410, V2502, V2510

pytestmark = pytest.mark.emulator_only

EXAMPLES = 10
SEED = 20261204


def _st() -> list[str]:
    exe = Path(sys.executable).with_name("st")
    return [str(exe)] if exe.exists() else [shutil.which("st") or "st"]


@pytest.fixture(scope="module")
def fuzz_pool(tmp_path_factory):
    from conftest import start_pool

    p = start_pool(tmp_path_factory.mktemp("fuzz"), "--ready", "0", "--timeout", "5", "--cooldown", "10",
                   "--max-sessions", "30")
    try:
        yield p
    finally:
        p.stop()


@pytest.mark.parametrize("version", [V1, V2410, V2502, V2510])
def test_the_pool_matches_its_openapi_description(fuzz_pool, tmp_path, version):
    cmd = [*_st(), "run", f"{fuzz_pool.endpoint}/openapi.json?api-version={version}",
           "--url", fuzz_pool.endpoint, "-H", f"Authorization: Bearer {fuzz_pool.token}",
           "--max-examples", str(EXAMPLES), "--seed", str(SEED), "--request-timeout", "30",
           "--exclude-checks", "unsupported_method",
           "--continue-on-failure", "--no-color"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
