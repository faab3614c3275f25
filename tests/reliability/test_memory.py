"""Memory the pool spends on one request is bounded, whatever a session's code returns or a client sends.

Before: a 200 MB value took the pool from 44 MB to a 1.1 GB peak and a 200 MB JSON request cost +541 MB.
Peaks are read from the kernel's own high-water mark (VmHWM), not sampled, and the bounds are generous.
"""

from __future__ import annotations

import uuid

import pytest
from _pool_http import V1, V2510, connect, error_code, q, v1_execute, v2_execute
from _proc import peak_rss_mb

pytestmark = pytest.mark.emulator_only

# The pool idles at ~45 MB; limits.py keeps one message under 32 MiB and one JSON body under 32 MiB.
PEAK_BOUND_MB = 400


def test_a_huge_value_is_dropped_with_a_note_and_the_session_goes_on(make_pool):
    p = make_pool("--ready", "0")
    with connect(p) as http:
        ident = str(uuid.uuid4())
        props = v1_execute(http, ident, "big = 'x' * 200_000_000\nbig")
        assert props["status"] == "Success"  # the code ran: its status says so
        assert props["result"] in ("", None)
        assert "dropped output of this execution" in props["stderr"] and "32 MiB" in props["stderr"]
        assert peak_rss_mb(p.proc.pid) < PEAK_BOUND_MB
        # the session keeps its state and its outputs flow again
        assert v1_execute(http, ident, "print(len(big))")["stdout"] == "200000000\n"
        body = v2_execute(http, ident, "1/0")
        assert body["status"] == "Failed" and "ZeroDivisionError" in body["result"]["stderr"]


def test_an_error_whose_message_is_huge_still_fails_the_execution(make_pool):
    p = make_pool("--ready", "0")
    with connect(p) as http:
        ident = str(uuid.uuid4())
        props = v1_execute(http, ident, "raise ValueError('v' * 60_000_000)")
        # the error and the reply (which repeats it) were both over the limit: no success is claimed
        assert props["status"] == "Failure"
        assert "cannot be told" in props["stderr"] and "dropped output" in props["stderr"]
        assert peak_rss_mb(p.proc.pid) < PEAK_BOUND_MB
        assert v1_execute(http, ident, "'next'")["result"] == "next"  # both channels work again


def test_long_output_is_cut_with_a_note(pool):
    from aca_kernel.emulator.limits import MAX_STREAM_CHARS

    with connect(pool) as http:
        code = f"import sys\nfor _ in range(5):\n    sys.stdout.write('y' * {MAX_STREAM_CHARS // 4})\n"
        props = v1_execute(http, str(uuid.uuid4()), code)
        assert props["status"] == "Success"
        out = props["stdout"]
        assert out.startswith("y" * 1000)
        assert out.index("\n[stdout cut") == MAX_STREAM_CHARS
        assert out.endswith(f"[stdout cut by the local session pool at {MAX_STREAM_CHARS:,} characters]\n")


def test_a_json_request_over_the_limit_is_refused_before_it_is_parsed(make_pool):
    p = make_pool("--ready", "0")
    with connect(p) as http:
        code = "x = '" + "a" * (80 << 20) + "'"
        r = http.post("executions", params=q(str(uuid.uuid4()), V2510), json={"code": code})
        assert r.status_code == 413 and error_code(r) == "RequestEntityTooLarge"
        assert "32 MiB" in r.json()["error"]["message"]
        assert peak_rss_mb(p.proc.pid) < PEAK_BOUND_MB
        # under the limit is fine
        assert v1_execute(http, str(uuid.uuid4()), "len('" + "b" * (8 << 20) + "')")["result"] == 8 << 20


def test_sixteen_sessions_returning_large_values_at_once_stay_bounded(make_pool):
    """Each value is just under the message limit; the pool's peak grows with concurrency, not without bound."""
    import concurrent.futures

    p = make_pool("--ready", "0", "--max-sessions", "20")
    with connect(p) as http:
        idents = [str(uuid.uuid4()) for _ in range(16)]
        for ident in idents:  # kernels first, so that the values below overlap
            assert v1_execute(http, ident, "1")["status"] == "Success"

        def big(ident: str) -> int:
            return len(v1_execute(http, ident, "'z' * 6_000_000")["result"])

        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            assert list(ex.map(big, idents)) == [6_000_000] * 16
        assert peak_rss_mb(p.proc.pid) < 1200


def test_old_execution_records_do_not_keep_large_results_alive():
    from aca_kernel.emulator.backend import MAX_RECORD_CHARS, Execution, Session

    session = Session("s", files=None, cooldown=60)  # type: ignore[arg-type]
    for i in range(10):
        e = Execution(id=str(i), identifier="s", execution_type="Synchronous", status="Succeeded",
                      result="r" * (MAX_RECORD_CHARS // 4))
        session.remember(e)
        session.trim_records()
    assert sum(e.size for e in session.executions.values()) <= MAX_RECORD_CHARS
    assert "9" in session.executions  # the newest is always kept
    small = [Execution(id=f"s{i}", identifier="s", execution_type="Synchronous", status="Succeeded")
             for i in range(3)]
    for e in small:
        session.remember(e)
    assert {"s0", "s1", "s2"} <= set(session.executions)


def test_the_upload_limit_still_holds(pool):
    with connect(pool) as http:
        from aca_kernel.emulator.files import MAX_UPLOAD_BYTES

        r = http.post("files/upload", params=q(str(uuid.uuid4()), V1),
                      files={"file": ("big.bin", b"\0" * (MAX_UPLOAD_BYTES + 1))})
        assert r.status_code == 413 and error_code(r) == "RequestEntityTooLarge"
