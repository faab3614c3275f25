"""Open files: the pool raises its limit, budgets sessions by descriptors, and never hangs or crashes on EMFILE.

Before: each session held ~25 descriptors; at the 1024 limit the 41st session failed with "Too many open files"
and every later request hung; a 930-part upload held open crashed the pool.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _pool_http import V1, V2510, connect, error_code, q, v1_execute
from _proc import open_fds
from conftest import wait_until

pytestmark = pytest.mark.emulator_only


def test_the_soft_open_file_limit_is_raised_to_the_hard_limit(make_pool):
    p = make_pool("--ready", "0", open_files=(256, 2048))
    limits = Path(f"/proc/{p.proc.pid}/limits").read_text()
    line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
    assert line.split()[3:5] == ["2048", "2048"], line


def test_a_session_costs_no_more_descriptors_than_budgeted(make_pool):
    from aca_kernel.emulator.limits import FDS_PER_KERNEL

    p = make_pool("--ready", "0")
    with connect(p) as http:
        assert v1_execute(http, "warm-up", "1")["status"] == "Success"
        before = open_fds(p.proc.pid)
        for i in range(4):
            assert v1_execute(http, f"s{i}", "1")["status"] == "Success"
        per_session = (open_fds(p.proc.pid) - before) / 4
    assert per_session <= FDS_PER_KERNEL, f"{per_session} descriptors per session"


def test_past_its_descriptor_budget_the_pool_refuses_new_sessions_and_keeps_serving_old_ones(make_pool):
    p = make_pool("--ready", "1", open_files=(200, 200))
    created: list[str] = []
    with connect(p) as http:
        http.timeout = httpx.Timeout(60)  # a hang (the old failure) fails the test instead of stalling it
        for _ in range(40):
            ident = str(uuid.uuid4())
            r = http.post("code/execute", params=q(ident, V1), json={"properties": {"code": "6 * 7"}})
            if r.status_code != 200:
                break
            assert r.json()["properties"]["result"] == 42
            created.append(ident)
        else:
            pytest.fail("200 descriptors held 40 sessions: the budget is not applied")
        assert r.status_code == 404 and error_code(r) == "SessionPoolMaxSessionsReached"
        message = r.json()["error"]["message"]
        assert "open-file limit (200" in message and "ulimit -n" in message
        assert len(created) >= 3
        # every existing session still works, files and code alike
        for ident in created:
            assert v1_execute(http, ident, "'still here'")["result"] == "still here"
            assert http.get("files", params=q(ident, V2510)).status_code == 200
        # and a slot freed is a slot taken
        assert http.delete("session", params=q(created[0], V2510)).status_code == 204
        assert v1_execute(http, "after-delete", "1")["status"] == "Success"
    assert not any("Too many open files" in line for line in p.output)


def _slow_multipart(parts: int, boundary: str, release: threading.Event) -> Iterator[bytes]:
    for i in range(parts):
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f{i}.txt\"\r\n"
               f"Content-Type: text/plain\r\n\r\npart {i}\r\n").encode()
    release.wait(120)  # the upload stays open, every part received, while other work goes on
    yield f"--{boundary}--\r\n".encode()


def test_an_upload_of_many_parts_held_open_holds_one_staging_file(make_pool):
    p = make_pool("--ready", "0", open_files=(300, 300))
    boundary = uuid.uuid4().hex
    release = threading.Event()
    ident = str(uuid.uuid4())
    result: dict[str, httpx.Response] = {}

    with connect(p) as http:
        def upload() -> None:
            result["r"] = http.post("files/upload", params=q(ident, V1),
                                    content=_slow_multipart(600, boundary, release),
                                    headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})

        worker = threading.Thread(target=upload)
        worker.start()
        try:
            staging = p.data_dir / ".staging"
            # wait until the pool has staged every part
            assert wait_until(lambda: sum(1 for _ in staging.rglob("up-*")) >= 600, timeout=60)
            assert open_fds(p.proc.pid) < 150  # 600 parts did not take 600 descriptors
            # the pool keeps serving new sessions meanwhile
            assert v1_execute(http, "beside-the-upload", "'ok'")["result"] == "ok"
        finally:
            release.set()
            worker.join(120)
        r = result["r"]
        assert r.status_code == 200, r.text
        assert len(r.json()["value"]) == 600
        assert http.get("files/content/f599.txt", params=q(ident, V1)).content == b"part 599"


def test_an_upload_of_too_many_parts_is_refused(pool):
    from aca_kernel.emulator.limits import MAX_UPLOAD_PARTS

    with connect(pool) as http:
        files = [("file", (f"f{i}", b"x")) for i in range(MAX_UPLOAD_PARTS + 1)]
        r = http.post("files/upload", params=q(str(uuid.uuid4()), V1), files=files)
        assert r.status_code == 400 and error_code(r) == "SessionRequestValidationFailed"
        assert str(MAX_UPLOAD_PARTS) in r.json()["error"]["message"]
