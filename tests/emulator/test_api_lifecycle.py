"""Pool lifecycle over real HTTP, each with a private emulator process: cooldown, capacity, execution limits,
out-of-memory, shutdown, the OpenAPI document and the command line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from _pool_http import V1, V2502, V2510, connect, error_code, new_id, q, v1_execute, v2_execute
from conftest import wait_until

TIMEOUT_MESSAGE = "Request timed out waiting for code execution to complete"


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, grandchildren, ...)."""
    out: set[int] = set()
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except FileNotFoundError:
            continue
        for tid in tasks:
            try:
                children = Path(f"/proc/{current}/task/{tid}/children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in out:
                    out.add(child)
                    todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _session_ids(http: httpx.Client) -> list[str]:
    return [s["identifier"] for s in http.get("listSessions", params=q(None, V2510)).json()["value"]]


def test_idle_session_is_destroyed_after_cooldown(make_pool):
    p = make_pool("--cooldown", "2", "--ready", "0")
    with connect(p) as http:
        ident = new_id()
        assert v2_execute(http, ident, "state = 'old'")["status"] == "Succeeded"
        http.post("files", params=q(ident, V2510), files={"file": ("old.txt", b"old")})
        first = http.get("session", params=q(ident, V2502)).json()["expireAt"]
        second = http.get("session", params=q(ident, V2502)).json()["expireAt"]
        assert second >= first  # every call moves the expiry forward
        # listSessions names no identifier, so polling it does not keep the session alive
        assert wait_until(lambda: ident not in _session_ids(http), timeout=30)
        assert wait_until(lambda: not any((p.data_dir / "sessions").iterdir()))
        # the identifier now gets a fresh, empty session
        assert http.get("files", params=q(ident, V2510)).json()["value"] == []
        assert v2_execute(http, ident, "state")["status"] == "Failed"


def test_every_call_resets_the_idle_clock(make_pool):
    p = make_pool("--ready", "0")
    with connect(p) as http:
        ident = new_id()

        def expire_at() -> str:
            r = http.get("session", params=q(ident, V2502))
            assert r.status_code == 200, r.text
            return r.json()["expireAt"]

        http.post("files", params=q(ident, V2510), files={"file": ("f.txt", b"f")})
        calls = {
            "list": lambda: http.get("files", params=q(ident, V2510)),
            "v1 list": lambda: http.get("files", params=q(ident, V1)),
            "download": lambda: http.get("files/f.txt/content", params=q(ident, V2510)),
            "metadata": lambda: http.get("files/f.txt", params=q(ident, V2510)),
            "execute": lambda: http.post("executions", params=q(ident, V2510), json={
                "codeInputType": "Inline", "executionType": "Synchronous", "code": "1"}),
            "upload": lambda: http.post("files", params=q(ident, V2510), files={"file": ("g.txt", b"g")}),
        }
        for name, call in calls.items():
            before = expire_at()
            assert call().status_code in (200, 202), name
            # the timestamps have microseconds: an untouched session would report the same expiry
            assert expire_at() > before, f"{name} did not reset the cooldown"


def test_ready_kernels_are_started_ahead_and_claimed_by_a_new_identifier(make_pool):
    p = make_pool("--ready", "1")
    # the pre-started kernel: its log line, with its (still unclaimed) data directory already on disk
    assert wait_until(lambda: any("session kernel ready" in line for line in p.output), timeout=60)
    warm_dirs = {d.name for d in (p.data_dir / "sessions").iterdir()}
    assert len(warm_dirs) == 1
    with connect(p) as http:
        ident = new_id()
        # process start times in clock ticks since boot (the same clock inside the sandbox's PID namespace)
        start_field = "int(open('/proc/self/stat').read().rsplit(')', 1)[1].split()[19])"
        now = int(subprocess.run([sys.executable, "-c", f"print({start_field})"], capture_output=True,
                                 text=True, check=True).stdout)
        code = f"open('/mnt/data/marker', 'w').close()\n{start_field}"
        result = v2_execute(http, ident, code)
        assert result["status"] == "Succeeded", result
        assert result["result"]["executionResult"] < now  # its kernel started before this identifier was used
        (marker,) = (p.data_dir / "sessions").glob("*/marker")
        assert marker.parent.name in warm_dirs
        # the pool starts another one to stay ready
        assert wait_until(lambda: sum("session kernel ready" in line for line in p.output) >= 2, timeout=60)


def test_pool_at_max_sessions_answers_404(make_pool):
    p = make_pool("--max-sessions", "2", "--ready", "0")
    with connect(p) as http:
        a, b, c = new_id(), new_id(), new_id()
        assert http.get("files", params=q(a, V2510)).status_code == 200
        assert http.post("files/upload", params=q(b, V1), files={"file": ("x", b"x")}).status_code == 200
        r = http.get("files", params=q(c, V2510))
        assert r.status_code == 404
        assert error_code(r) == "SessionPoolMaxSessionsReached"
        # existing sessions keep working; deleting one makes room
        assert http.get("files", params=q(a, V2510)).status_code == 200
        assert http.delete("session", params=q(a, V2510)).status_code == 204
        assert http.get("files", params=q(c, V2510)).status_code == 200


def test_execution_time_limit(make_pool):
    p = make_pool("--timeout", "2", "--ready", "0")
    with connect(p) as http:
        ident = new_id()
        assert v1_execute(http, ident, "kept = 7")["status"] == "Success"
        props = v1_execute(http, ident, "import time\ntime.sleep(10)")
        assert props["status"] == "Failure"
        assert props["stderr"] == TIMEOUT_MESSAGE
        assert props["result"] is None
        # the session stays usable, its state intact
        assert v1_execute(http, ident, "kept")["result"] == 7
        # a request's lower timeoutInSeconds is honoured too
        body = v2_execute(http, ident, "import time\ntime.sleep(10)", timeoutInSeconds=1)
        assert body["status"] == "Failed"
        assert body["result"]["stderr"] == TIMEOUT_MESSAGE


def test_out_of_memory_aborts_and_the_session_restarts_empty(make_pool):
    p = make_pool("--memory", "300M", "--ready", "0")
    with connect(p) as http:
        ident = new_id()
        assert v1_execute(http, ident, "before = 1")["status"] == "Success"
        http.post("files/upload", params=q(ident, V1), files={"file": ("kept.txt", b"kept")})
        props = v1_execute(http, ident, "hog = b'x' * (1024 ** 3)")
        if "MemoryError" in props["stderr"] and any("memory: rlimit" in line for line in p.output):
            pytest.skip("no memory cgroup on this machine: the RLIMIT_AS fallback raises MemoryError instead")
        assert props["status"] == "Failure"
        # the service's words, then why (the emulator's addition, docs/emulator.md)
        assert props["stderr"].startswith("Execution aborted: ")
        assert "ran out of memory" in props["stderr"] and "300 MiB" in props["stderr"]
        after = v1_execute(http, ident, "'before' in dir()")
        assert after["status"] == "Success"
        assert after["result"] is False
        # /mnt/data survives the kernel (the emulator's choice, docs/emulator.md)
        assert http.get("files/content/kept.txt", params=q(ident, V1)).content == b"kept"


def test_sigterm_stops_every_session_kernel(make_pool):
    p = make_pool("--ready", "1")
    with connect(p) as http:
        for _ in range(2):
            assert v1_execute(http, new_id(), "1")["status"] == "Success"
        http.post("files/upload", params=q(new_id(), V1), files={"file": ("x", b"x")})
        # code still running at shutdown must not hold it up (p.stop() kills after 20 s: returncode -9)
        busy = new_id()
        r = http.post("executions", params=q(busy, V2510), json={
            "codeInputType": "Inline", "executionType": "Asynchronous", "code": "import time\ntime.sleep(300)"})
        running = r.json()["id"]
        assert http.get(f"executions/{running}", params=q(busy, V2510)).json()["status"] == "Running"
    assert p.proc is not None
    # three session kernels and a pre-started one, told apart by their connection files
    def kernels(pids) -> set[str]:
        return set(re.findall(r"-f (\S+kernel\.json)", " ".join(_cmdline(pid) for pid in pids if _alive(pid))))

    assert wait_until(lambda: len(kernels(_descendants(p.proc.pid))) >= 4)
    below = _descendants(p.proc.pid)
    ours = kernels(below)
    p.stop()
    assert p.proc.returncode == 0
    assert wait_until(lambda: not any(_alive(pid) for pid in below), timeout=20)
    everything = [int(d) for d in os.listdir("/proc") if d.isdigit()]
    assert kernels(everything) & ours == set()  # no kernel escaped to another parent either
    assert [str(x) for x in p.data_dir.rglob("*")] == []  # session directories and staging removed


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_openapi_document(pool):
    if pool.live:
        pytest.skip("the OpenAPI document is the emulator's")
    r = httpx.get(pool.endpoint.rstrip("/") + "/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {
        "/code/execute", "/files/upload", "/files/content/{filename}", "/files", "/executions",
        "/executions/{executionId}", "/files/{filename}/content", "/files/{filename}", "/session",
        "/listSessions", "/metadata",
    }
    assert set(doc["paths"]["/files"]) == {"get", "post"}
    assert set(doc["paths"]["/files/{filename}"]) == {"get", "delete"}
    versions = doc["paths"]["/files"]["get"]["parameters"][0]["schema"]["enum"]
    assert versions == [V1, "2024-10-02-preview", V2502, V2510]


def _start_cli(*args: str) -> tuple[subprocess.Popen, list[str], threading.Event]:
    proc = subprocess.Popen([sys.executable, "-m", "aca_kernel.emulator", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("token: "):
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    return proc, lines, ready


def test_cli_generates_and_prints_a_token_and_cleans_its_temp_dir(pool):
    if pool.live:
        pytest.skip("starts its own emulator")
    proc, lines, ready = _start_cli("--ready", "0", "--no-sandbox")
    try:
        assert ready.wait(60)
        assert [line.split(":", 1)[0] for line in lines] == ["pool endpoint", "token"]
        endpoint = lines[0].split(": ", 1)[1].strip()
        token = lines[1].split(": ", 1)[1].strip()
        assert endpoint.startswith("http://127.0.0.1:")
        assert httpx.get(f"{endpoint}/files", params=q(new_id(), V2510)).status_code == 401
        r = httpx.get(f"{endpoint}/files", params=q(new_id(), V2510), headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "NOT isolated" in err
    assert token not in err
    data_dirs = [w for line in err.splitlines() if "(data in " in line for w in [line.split("(data in ")[1]]]
    data_dir = data_dirs[0].split(",")[0]
    assert not Path(data_dir).exists()


def test_cli_refuses_a_python_without_ipykernel(tmp_path, pool):
    if pool.live:
        pytest.skip("starts its own emulator")
    no_ipykernel = tmp_path / "python"
    no_ipykernel.write_text("#!/bin/sh\necho 'ModuleNotFoundError: ipykernel' >&2\nexit 1\n")
    no_ipykernel.chmod(0o755)
    r = subprocess.run([sys.executable, "-m", "aca_kernel.emulator", "--port", "0", "--python", str(no_ipykernel)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stdout == ""
    assert "ipykernel" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run([sys.executable, "-m", "aca_kernel.emulator", "--cooldown", "-1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "--cooldown" in r.stderr


def test_cli_refuses_to_start_without_bubblewrap(tmp_path, pool):
    if pool.live:
        pytest.skip("starts its own emulator")
    env = {**os.environ, "PATH": str(tmp_path)}  # no bwrap on this PATH
    r = subprocess.run([sys.executable, "-m", "aca_kernel.emulator", "--port", "0"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 2
    assert r.stdout == ""
    assert "bubblewrap" in r.stderr
    assert "--no-sandbox" in r.stderr


def test_cli_takes_the_token_from_the_environment(pool):
    if pool.live:
        pytest.skip("starts its own emulator")
    env = {**os.environ, "ACA_EMULATOR_TOKEN": "env-token-" + new_id()}
    proc = subprocess.Popen([sys.executable, "-m", "aca_kernel.emulator", "--port", "0", "--ready", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("pool endpoint: ")
        endpoint = line.split(": ", 1)[1].strip()
        auth = {"Authorization": f"Bearer {env['ACA_EMULATOR_TOKEN']}"}
        assert httpx.get(f"{endpoint}/files", params=q(new_id(), V2510), headers=auth).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "token:" not in out  # not generated, so not printed
    assert env["ACA_EMULATOR_TOKEN"] not in out + err
