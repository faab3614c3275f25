"""The ``aca-sessions`` command line, run as a real subprocess against the real local pool (``pool`` fixture)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import LIVE

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("aca-sessions")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "aca_kernel"]


@pytest.fixture
def run(pool, tmp_path: Path):
    """Run the CLI in tmp_path against the shared pool, in a session of its own."""
    session = f"cli-{uuid.uuid4()}"
    env = dict(os.environ, ACA_POOL_MANAGEMENT_ENDPOINT=pool.endpoint, ACA_SESSION_ID=session,
               ACA_LOCAL_POOL_DIR=str(tmp_path / "no-local-pool"))
    if pool.token:
        env["ACA_TOKEN"] = pool.token

    def _run(*args: str, input: str | None = None, extra_env: dict | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run([*_cli(), *args], cwd=tmp_path, env={**env, **(extra_env or {})}, input=input,
                              capture_output=True, text=True, timeout=180)
        if pool.token:
            assert pool.token not in proc.stdout + proc.stderr
        return proc

    _run.session = session  # type: ignore[attr-defined]
    yield _run
    if (tmp_path / "no-local-pool" / "aca-sessions-pool.json").exists():  # nothing should have started one
        subprocess.run([*_cli(), "pool", "stop"], env=env, capture_output=True, timeout=60)
        pytest.fail("a command fell back to the local pool although an endpoint was set")


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("aca-sessions: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_exec_value(run):
    proc = run("exec", "-c", "x = 40\nx + 2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "42"


def test_exec_print_and_state_persists(run):
    assert run("exec", "-c", "greeting = 'hello from the session'").returncode == 0
    proc = run("exec", "-c", "print(greeting)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello from the session\n"


def test_exec_file_and_stdin(run, tmp_path: Path):
    (tmp_path / "script.py").write_text("print(sum(range(10)))\n")
    proc = run("exec", "script.py")
    assert (proc.returncode, proc.stdout) == (0, "45\n"), proc.stderr
    proc = run("exec", "-", input="print('from stdin')\n")
    assert (proc.returncode, proc.stdout) == (0, "from stdin\n"), proc.stderr


def test_exec_error_exits_1_with_the_traceback(run):
    proc = run("exec", "-c", "1/0")
    assert proc.returncode == 1
    assert "ZeroDivisionError" in proc.stderr
    assert "aca-sessions: error" not in proc.stderr  # a failed cell is not a tool error


def test_exec_timeout_is_a_failed_execution(run):
    proc = run("exec", "--timeout", "1", "-c", "import time\ntime.sleep(60)\nprint('finished')")
    assert proc.returncode == 1
    assert "finished" not in proc.stdout
    assert "timed out" in proc.stderr.lower()


@pytest.mark.skipif(LIVE, reason="named pools on one server are emulator-only")
def test_exec_on_an_azure_style_pool_path(run, pool):
    proc = run("exec", "--endpoint", pool.pool_endpoint("clipool"), "-c", "'named pool'")
    assert (proc.returncode, proc.stdout) == (0, "named pool\n"), proc.stderr


def test_exec_json(run):
    proc = run("exec", "--json", "-c", "print('a'); 7 * 6")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "succeeded"
    assert doc["stdout"] == "a\n"
    assert doc["result"] == 42
    assert doc["session"] == run.session


def test_exec_image_is_saved_as_png(run, tmp_path: Path):
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('cli')"
    proc = run("exec", "--image-out", "plot.png", "-c", code)
    assert proc.returncode == 0, proc.stderr
    assert "plot.png" in proc.stderr
    assert (tmp_path / "plot.png").read_bytes().startswith(PNG_SIGNATURE)
    # Without --image-out the file gets a timestamped name in the working directory.
    proc = run("exec", "-c", code)
    assert proc.returncode == 0, proc.stderr
    (saved,) = tmp_path.glob("result-*.png")
    assert saved.name in proc.stderr
    assert saved.read_bytes().startswith(PNG_SIGNATURE)
    # a new image never overwrites an existing file: occupy every name of the next seconds
    saved.unlink()
    start = time.time()
    blockers = [tmp_path / time.strftime("result-%Y%m%d-%H%M%S.png", time.localtime(start + i)) for i in range(-1, 30)]
    for blocker in blockers:
        blocker.write_bytes(b"mine")
    proc = run("exec", "-c", code)
    assert proc.returncode == 0, proc.stderr
    assert all(b.read_bytes() == b"mine" for b in blockers)
    new = [p for p in tmp_path.glob("result-*.png") if p.read_bytes().startswith(PNG_SIGNATURE)]
    assert len(new) == 1 and new[0].name in proc.stderr


def test_files_round_trip(run, tmp_path: Path):
    payload = os.urandom(300_000) + b"end"
    (tmp_path / "blob.bin").write_bytes(payload)
    put = run("files", "put", "blob.bin", "sub/blob.bin")
    assert put.returncode == 0, put.stderr
    # the plain progress line (stderr is not a terminal)
    assert "upload sub/blob.bin: 293.0 KB / 293.0 KB (100%)" in put.stderr.splitlines()

    listing = run("files", "ls", "--json", "-r")
    assert listing.returncode == 0, listing.stderr
    entries = {e["path"]: e for e in json.loads(listing.stdout)}
    assert entries["sub/blob.bin"]["size"] == len(payload)

    # The code sees the same file.
    proc = run("exec", "-c", "import os; os.path.getsize('/mnt/data/sub/blob.bin')")
    assert proc.stdout.strip() == str(len(payload))

    get = run("files", "get", "sub/blob.bin", "copy.bin")
    assert get.returncode == 0, get.stderr
    assert (tmp_path / "copy.bin").read_bytes() == payload
    # the plain progress bar's last line: the whole size, from the reply's Content-Length
    assert "download sub/blob.bin: 293.0 KB / 293.0 KB (100%)" in get.stderr.splitlines()
    assert not [p.name for p in tmp_path.iterdir() if "part" in p.name]
    quiet = run("files", "get", "-q", "sub/blob.bin", "quiet.bin")
    assert quiet.returncode == 0 and "download sub/blob.bin:" not in quiet.stderr

    rm = run("files", "rm", "sub/blob.bin")
    assert rm.returncode == 0, rm.stderr
    listing = run("files", "ls", "--json", "-r")
    assert "sub/blob.bin" not in {e["path"] for e in json.loads(listing.stdout)}


def test_files_get_to_stdout(run, tmp_path: Path):
    (tmp_path / "hello.txt").write_text("hello, stdout\n")
    assert run("files", "put", "-q", "hello.txt").returncode == 0
    proc = run("files", "get", "hello.txt", "-")
    assert (proc.returncode, proc.stdout) == (0, "hello, stdout\n"), proc.stderr


def test_missing_remote_file_is_one_line_and_exit_3(run, tmp_path: Path):
    proc = run("files", "get", "does-not-exist.txt")
    assert proc.returncode == 3
    assert "does-not-exist" in _one_error_line(proc) or "404" in _one_error_line(proc)
    assert not (tmp_path / "does-not-exist.txt").exists()


def test_missing_local_file_is_one_line_and_exit_3(run):
    proc = run("files", "put", "nope.csv")
    assert proc.returncode == 3
    assert "nope.csv" in _one_error_line(proc)
    proc = run("exec", "missing_script.py")
    assert proc.returncode == 3
    assert "missing_script.py" in _one_error_line(proc)


def test_bad_session_id_is_rejected_with_a_message(run):
    proc = run("exec", "--session", "bad id with spaces/", "-c", "1")
    assert proc.returncode in (2, 3)
    assert "session" in _one_error_line(proc).lower() or "identifier" in _one_error_line(proc).lower()


def test_usage_errors_exit_2(run):
    assert run("exec").returncode == 2
    assert run("exec", "-c", "1", "file.py").returncode == 2
    assert run("files").returncode == 2
    assert run("no-such-command").returncode == 2


def test_unreachable_endpoint_is_exit_3(run):
    proc = run("exec", "--endpoint", "http://127.0.0.1:9/", "-c", "1", extra_env={"ACA_TOKEN": "t"})
    assert proc.returncode == 3
    _one_error_line(proc)


@pytest.mark.parametrize("command", [("pool", "start"), ("exec", "-c", "1"), ("files", "ls")])
def test_a_local_pool_that_cannot_start_is_one_line_and_exit_3(tmp_path: Path, command):
    env = {k: v for k, v in os.environ.items() if k not in ("ACA_POOL_MANAGEMENT_ENDPOINT", "ACA_SESSION_ID")}
    env.update(ACA_LOCAL_POOL_DIR=str(tmp_path / "state"), ACA_LOCAL_POOL_ARGS="--token mine")
    proc = subprocess.run([*_cli(), *command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert "must not set --token" in _one_error_line(proc)
    assert not (tmp_path / "state" / "aca-sessions-pool.json").exists()


@pytest.mark.skipif(LIVE, reason="the local pool is emulator-only")
def test_without_endpoint_uses_the_local_pools_default_session(tmp_path: Path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("ACA_POOL_MANAGEMENT_ENDPOINT", "ACA_TOKEN", "ACA_SESSION_ID")}
    env["ACA_LOCAL_POOL_DIR"] = str(tmp_path / "state")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*_cli(), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)

    try:
        proc = run("exec", "-c", "open('/mnt/data/made-by-exec.txt', 'w').write('same session')")
        assert proc.returncode == 0, proc.stderr
        assert "started the local session pool" in proc.stderr
        get = run("files", "get", "made-by-exec.txt")
        assert get.returncode == 0, get.stderr
        assert "using the local session pool" in get.stderr
        assert (tmp_path / "made-by-exec.txt").read_text() == "same session"
    finally:
        stop = run("pool", "stop")
    assert stop.returncode == 0


def test_progress_plain_lines_per_quarter_and_silent_failure():
    import io

    from aca_kernel._progress import progress_bar

    out = io.StringIO()
    bar = progress_bar(None, "upload x", file=out)  # the total arrives with the first callback
    for done in range(0, 1001, 50):
        bar(done, 1000)
    bar.close()
    lines = out.getvalue().splitlines()
    assert [ln.split("(")[-1] for ln in lines] == ["25%)", "50%)", "75%)", "100%)"]
    assert lines[-1] == "upload x: 1000 B / 1000 B (100%)"

    out = io.StringIO()
    failed = progress_bar(10, "download y", file=out)
    failed(1, 10)
    failed.close(ok=False)
    assert out.getvalue() == ""


def test_progress_uses_tqdm_on_a_terminal():
    import io

    from aca_kernel._progress import progress_bar

    out = io.StringIO()
    with progress_bar(2048, "upload z", file=out, tty=True) as bar:
        bar(1024, 2048)
        bar(2048, 2048)
    assert "upload z" in out.getvalue() and "2.00k" in out.getvalue()


@pytest.mark.slow
@pytest.mark.skipif(LIVE, reason="the local pool is emulator-only")
def test_lab_serves_the_kernelspec_and_starts_the_local_pool(tmp_path: Path):
    import signal
    import socket

    import httpx
    from conftest import wait_until

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("ACA_POOL_MANAGEMENT_ENDPOINT", "ACA_TOKEN")}
    env.update(ACA_LOCAL_POOL_DIR=str(tmp_path / "state"), JUPYTER_PATH="")
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen([*_cli(), "lab", "--no-browser", f"--port={port}", "--ServerApp.token=t",
                             f"--ServerApp.root_dir={tmp_path}", "--LabApp.news_url=None"],
                            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)

    def kernelspecs():
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/api/kernelspecs", params={"token": "t"}, timeout=5)
        except httpx.HTTPError:
            return None
        return r.json()["kernelspecs"] if r.status_code == 200 else None

    try:
        specs = wait_until(kernelspecs, timeout=90, interval=0.5)
        assert specs, (tmp_path / "lab.log").read_text()
        assert specs["aca_sessions"]["spec"]["display_name"] == "ACA Sessions"
        assert "logo-64x64" in specs["aca_sessions"]["resources"]
        assert "started the local session pool" in (tmp_path / "lab.log").read_text()
    finally:
        proc.send_signal(signal.SIGTERM)  # the CLI exec'd into Lab, so this reaches Lab itself
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        subprocess.run([*_cli(), "pool", "stop"], env=env, capture_output=True, timeout=60)


@pytest.mark.skipif(LIVE, reason="starts a local emulator")
def test_emulator_subcommand_runs_the_pool(tmp_path: Path):
    import signal

    import httpx

    args = [*_cli(), "emulator", "--port", "0", "--data-dir", str(tmp_path / "data"), "--ready", "0"]
    if shutil.which("bwrap") is None:
        args.append("--no-sandbox")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("pool endpoint: http://127.0.0.1:"), first
        token_line = proc.stdout.readline()  # no --token given: the emulator made one and printed it
        assert token_line.startswith("token: ")
        endpoint, token = first.split(": ", 1)[1].strip(), token_line.split(": ", 1)[1].strip()
        r = httpx.get(endpoint.rstrip("/") + "/files", timeout=30, headers={"Authorization": f"Bearer {token}"},
                      params={"api-version": "2024-02-02-preview", "identifier": "cli-emulator"})
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_help_and_module_entry_point():
    proc = subprocess.run([sys.executable, "-m", "aca_kernel", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for command in ("exec", "files", "install", "lab", "pool", "emulator"):
        assert command in proc.stdout
    assert subprocess.run([*_cli()], capture_output=True, timeout=60).returncode == 2
