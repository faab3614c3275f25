"""Session lifecycle through the real kernel: interrupts, restart, lost state, silent code, auth failures."""

from __future__ import annotations

import queue
import re
import time

import pytest
from conftest import wait_until

from .conftest import pool_kernelspec, write_kernelspec
from .helpers import drain, run, text


def _identifier(kc) -> str:
    _, out = run(kc, "%aca_session")
    m = re.search(r"identifier (\S+)", text(out))
    assert m, text(out)
    return m.group(1)


@pytest.mark.parametrize("spec", ["aca_test", "aca_test_signal"])
def test_interrupt_stops_the_remote_code_and_the_session_goes_on(kernel, spec):
    km, kc = kernel(spec)
    assert km.kernel_spec.interrupt_mode == ("message" if spec == "aca_test" else "signal")
    run(kc, "kept = 'still here'")
    _interrupt_where(km, kc, "import time\ntime.sleep(60)\n'finished'", "time.sleep(60)")
    reply, out = run(kc, "kept", timeout=30)  # no wait behind the old cell: it is over
    assert reply["status"] == "ok"
    assert [m["content"]["data"]["text/plain"] for m in out if m["msg_type"] == "execute_result"] == \
        ["'still here'"]


def _started(kc, code: str) -> str:
    """Send a cell and return its msg_id once the kernel is working on it."""
    msg_id = kc.execute(code)
    while True:
        msg = kc.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "execute_input":
            return msg_id


def _interrupt_where(km, kc, code: str, stopped_at: str) -> None:
    """Interrupt ``code`` two seconds in: KeyboardInterrupt raised in the session, at ``stopped_at``."""
    msg_id = _started(kc, code)
    time.sleep(2)
    interrupted_at = time.monotonic()
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=30)
    took = time.monotonic() - interrupted_at
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
    # raised in the session, where the code was: the traceback points at the line that waited
    assert stopped_at in re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(reply["content"]["traceback"]))
    assert took < 30, took  # long before the wait could have ended by itself
    print(f"interrupt to reply: {took:.2f} s")
    drain(kc)


def test_interrupt_stops_a_cell_blocked_in_socket_or_file_io(kernel):
    # A real SIGINT on the session's main thread: a blocked recv or read returns EINTR and the handler raises
    # there (a flag checked between bytecodes, as _thread.interrupt_main sets, would wait for ever).
    km, kc = kernel()
    run(kc, "import os, socket\nkept = 'still here'\nleft, right = socket.socketpair()\nr, w = os.pipe()")
    _interrupt_where(km, kc, "left.recv(1)", "left.recv(1)")
    _interrupt_where(km, kc, "import select\nselect.select([r], [], [], 120)", "select.select([r], [], [], 120)")
    _interrupt_where(km, kc, "os.read(r, 1)", "os.read(r, 1)")
    reply, out = run(kc, "right.send(b'x')\nkept, left.recv(1)", timeout=30)  # variables and sockets survive
    assert reply["status"] == "ok"
    assert [m["content"]["data"]["text/plain"] for m in out if m["msg_type"] == "execute_result"] == \
        ["('still here', b'x')"]


def test_code_that_ignores_the_interrupt_is_given_up_on_the_second_one(kernel):
    # SIGINT blocked on the session's main thread stands for C code that never returns to Python: the first
    # interrupt asks the session and goes on waiting, the second gives up with what to do, and nothing hangs.
    km, kc = kernel()
    old = _identifier(kc)
    msg_id = _started(kc, "import signal, time\nsignal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})\n"
                          "try:\n    time.sleep(20)\nfinally:\n    signal.pthread_sigmask(signal.SIG_UNBLOCK, "
                          "{signal.SIGINT})")
    time.sleep(2)
    km.interrupt_kernel()
    time.sleep(3)  # the session took the stop file and signalled; the code went on
    with pytest.raises(queue.Empty):
        kc.get_shell_msg(timeout=0.5)  # still waiting for the cell, as after an interrupt that stops it
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
    said = reply["content"]["evalue"] + "\n".join(reply["content"]["traceback"])
    assert "did not stop at the interrupt" in said and "%aca_new_session" in said
    drain(kc)
    _, out = run(kc, "%aca_new_session", timeout=30)
    reply, out = run(kc, "6 * 7", timeout=60)  # at once, on a fresh session, while the old one is still busy
    assert reply["status"] == "ok"
    assert [m["content"]["data"]["text/plain"] for m in out if m["msg_type"] == "execute_result"] == ["42"]
    assert _identifier(kc) != old


def test_restart_gives_a_fresh_identifier_and_state(kernel):
    km, kc = kernel()
    run(kc, "kept = 1")
    before = _identifier(kc)
    km.restart_kernel(now=False)
    kc.wait_for_ready(timeout=60)
    drain(kc)
    after = _identifier(kc)
    assert after != before
    reply, _out = run(kc, "kept")
    assert reply["status"] == "error" and reply["ename"] == "NameError"


def test_identifier_from_environment(kernel, kernelspecs, pool):
    write_kernelspec(kernelspecs, "aca_test_fixed_id",
                     {"ACA_POOL_MANAGEMENT_ENDPOINT": pool.endpoint, "ACA_TOKEN": pool.token or "",
                      "ACA_SESSION_ID": "fixed-session-0001", "ACA_PROGRESS_AFTER": "60"})
    _km, kc = kernel("aca_test_fixed_id")
    assert _identifier(kc) == "fixed-session-0001"


def test_silent_code_runs_locally_and_allocates_nothing(kernel):
    _km, kc = kernel()
    reply, out = run(kc, "import os\n_aca_probe = os.getpid()\nprint('hidden')", silent=True)
    assert reply["status"] == "ok"
    assert out == []
    _, out = run(kc, "%aca_session")
    assert "not started yet" in text(out)
    reply, out = run(kc, "%%local\nprint(_aca_probe > 0)")
    assert text(out) == "True\n"
    # a failing or displaying probe prints nothing either: the error goes into the reply only
    reply, out = run(kc, "from IPython.display import display\ndisplay('shown')\n1 / 0", silent=True)
    assert reply["status"] == "error" and reply["ename"] == "ZeroDivisionError"
    assert out == []
    _, out = run(kc, "%aca_session")
    assert "not started yet" in text(out)


def test_lost_state_is_detected_and_replayable(kernel, kernelspecs, make_pool):
    short = make_pool("--cooldown", "2", "--ready", "0")
    pool_kernelspec(kernelspecs, "aca_test_cooldown", short)
    _km, kc = kernel("aca_test_cooldown")
    reply, _ = run(kc, "base = 41")
    assert reply["status"] == "ok"
    reply, _ = run(kc, "import math")
    assert reply["status"] == "ok"
    time.sleep(5)  # idle past the pool's 2 s cooldown: the session is recycled
    reply, out = run(kc, "base + 1")
    assert reply["status"] == "error" and reply["ename"] == "NameError"
    notice = text(out, "stderr")
    assert "was recycled" in notice and "%aca_replay" in notice and "2 cell(s)" in notice
    assert "files in /mnt/data from earlier cells are gone" in notice
    assert any("application/vnd.jupyter.widget-view+json" in m["content"].get("data", {})
               for m in out if m["msg_type"] == "display_data")  # the replay button
    reply, out = run(kc, "%aca_replay")
    assert "In [1]: base = 41" in text(out) and "In [2]: import math" in text(out)
    assert "will do so again" not in text(out)  # no file survived to be written twice
    reply, out = run(kc, "%aca_replay --yes")
    assert "Replayed 2 cell(s)" in text(out)
    reply, out = run(kc, "base + 1")
    assert [m["content"]["data"]["text/plain"] for m in out if m["msg_type"] == "execute_result"] == ["42"]


def test_a_restarted_session_kernel_keeps_its_files_and_says_so(kernel, kernelspecs, make_pool):
    fresh = make_pool("--ready", "0")
    pool_kernelspec(kernelspecs, "aca_test_restart", fresh)
    _km, kc = kernel("aca_test_restart")
    reply, _ = run(kc, "with open('log.txt', 'a') as f:\n    f.write('one line\\n')\nstate = 1")
    assert reply["status"] == "ok"
    reply, _ = run(kc, "import os\nos._exit(1)")  # the session's Python dies; its /mnt/data stays
    assert reply["status"] == "error"
    reply, out = run(kc, "open('log.txt').read()")
    notice = text(out, "stderr")
    assert "Python process restarted" in notice and "files in /mnt/data are kept" in notice
    assert [m["content"]["data"]["text/plain"] for m in out if m["msg_type"] == "execute_result"] == \
        ["'one line\\n'"]
    _, out = run(kc, "%aca_replay")
    assert "In [1]: with open('log.txt', 'a') as f:" in text(out) and "will do so again" in text(out)


def test_auth_failure_is_one_line_that_says_what_to_do(kernel, kernelspecs, pool):
    write_kernelspec(kernelspecs, "aca_test_badtoken",
                     {"ACA_POOL_MANAGEMENT_ENDPOINT": pool.endpoint, "ACA_TOKEN": "wrong-token",
                      "ACA_PROGRESS_AFTER": "60"})
    _km, kc = kernel("aca_test_badtoken")
    reply, out = run(kc, "1 + 1")
    assert reply["status"] == "error"
    assert reply["ename"] == "ClientAuthenticationError"
    assert [m["msg_type"] for m in out] == ["error"]
    tb = out[0]["content"]["traceback"]
    assert len(tb) == 1 and "Traceback" not in tb[0]
    assert "wrong-token" not in tb[0]
    # names the token scope and how to sign in
    assert "https://dynamicsessions.io/.default" in tb[0]
    assert "az login" in tb[0] and "ACA_TOKEN" in tb[0]


def _listed_sessions(pool) -> set[str]:
    import httpx

    response = httpx.get(pool.endpoint.rstrip("/") + "/listSessions", params={"api-version": "2025-02-02-preview"},
                         headers={"Authorization": f"Bearer {pool.token}"}, timeout=30)
    response.raise_for_status()
    body = response.json()
    return {s["identifier"] for s in body.get("sessions", body.get("value", []))}


def test_restart_deletes_the_old_session_where_the_api_can(kernel, kernelspecs, pool):
    write_kernelspec(kernelspecs, "aca_test_v2025",
                     {"ACA_POOL_MANAGEMENT_ENDPOINT": pool.endpoint, "ACA_TOKEN": pool.token or "",
                      "ACA_API_VERSION": "2025-02-02-preview", "ACA_PROGRESS_AFTER": "60"})
    km, kc = kernel("aca_test_v2025")
    run(kc, "state = 1")
    old = _identifier(kc)
    _, out = run(kc, "%aca_session")
    assert "expires at" in text(out)  # GET session on this version
    assert old in _listed_sessions(pool)
    km.restart_kernel(now=False)
    kc.wait_for_ready(timeout=60)
    assert old not in _listed_sessions(pool)


def test_shutdown_deletes_the_session_where_the_api_can(kernel, kernelspecs, pool):
    write_kernelspec(kernelspecs, "aca_test_v2025_shutdown",
                     {"ACA_POOL_MANAGEMENT_ENDPOINT": pool.endpoint, "ACA_TOKEN": pool.token or "",
                      "ACA_API_VERSION": "2025-02-02-preview", "ACA_PROGRESS_AFTER": "60"})
    km, kc = kernel("aca_test_v2025_shutdown")
    run(kc, "state = 1")
    old = _identifier(kc)
    assert old in _listed_sessions(pool)
    km.shutdown_kernel(now=False)  # a shutdown_request, as a front end sends it
    assert not km.is_alive()
    assert old not in _listed_sessions(pool)


def test_completion_gives_nothing_at_once_while_a_background_cell_holds_the_session(kernel):
    _km, kc = kernel()
    run(kc, "alpha_value = 1")
    msg_id = kc.complete("alpha_", 6)  # the first completion also loads the remote completer (about 1 s)
    reply = kc.get_shell_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["matches"] == ["alpha_value"]
    run(kc, "%%aca --background\nimport time\ntime.sleep(30)")
    started = time.monotonic()
    kc.complete("alpha_", 6)
    reply = kc.get_shell_msg(timeout=30)
    assert reply["content"]["status"] == "ok" and reply["content"]["matches"] == []
    assert time.monotonic() - started < 10  # not after the background cell
    run(kc, "%aca_jobs --stop 1", timeout=60)
    kc.complete("alpha_", 6)
    assert kc.get_shell_msg(timeout=30)["content"]["matches"] == ["alpha_value"]


def test_keepalive_keeps_an_idle_session(kernel, kernelspecs, make_pool):
    short = make_pool("--cooldown", "2", "--ready", "0")
    write_kernelspec(kernelspecs, "aca_test_keepalive",
                     {"ACA_POOL_MANAGEMENT_ENDPOINT": short.endpoint, "ACA_TOKEN": short.token or "",
                      "ACA_KEEPALIVE": "0.5", "ACA_PROGRESS_AFTER": "60"})
    _km, kc = kernel("aca_test_keepalive")
    run(kc, "kept_alive = 'yes'")
    time.sleep(5)  # well past the 2 s cooldown, with only the keep-alive touching the session
    reply, out = run(kc, "kept_alive")
    assert reply["status"] == "ok", out
    assert "was recycled" not in text(out, "stderr")
    _, out = run(kc, "%aca_session")
    assert "keep-alive: every" in text(out)


def test_kernel_options_are_traitlets(kernel, kernelspecs, pool):
    write_kernelspec(kernelspecs, "aca_test_configured",
                     {"ACA_POOL_MANAGEMENT_ENDPOINT": pool.endpoint, "ACA_TOKEN": pool.token or "",
                      "ACA_PROGRESS_AFTER": "60"},
                     extra_argv=("--ACAKernel.session_id=from-config-0001", "--ACAKernel.rich=False",
                                 "--ACAKernel.cooldown=900"))
    _km, kc = kernel("aca_test_configured")
    assert _identifier(kc) == "from-config-0001"
    _, out = run(kc, "%aca_config")
    assert "rich = False" in text(out) and "cooldown = 900.0" in text(out)
    reply, out = run(kc, "print('typed')\n3")
    assert reply["status"] == "ok" and text(out) == "typed\n"


def test_the_token_reaches_no_output_log_or_repr(kernel, pool, tmp_path):
    token = pool.token or ""
    assert token
    _km, kc = kernel()
    log = tmp_path / "kernel.log"
    shown = []
    reply, out = run(kc, f"%%local\nimport logging\nlogging.basicConfig(level=logging.DEBUG, filename={str(log)!r})")
    assert reply["status"] == "ok"
    for code in ("print('x')\n1", "1/0", "%aca_session", "%aca_config", "%aca_new_session",
                 "%%local\nctx = get_ipython()._aca_context\n"
                 "print(repr(ctx.existing()), repr(ctx.settings.as_dict()), repr(ctx.existing().client))"):
        _reply, out = run(kc, code)
        shown.extend(str(m["content"]) for m in out)
    kc.complete("pri", 3)
    shown.append(str(kc.get_shell_msg(timeout=30)["content"]))
    assert "SessionsClient" in "".join(shown)  # the reprs were shown
    assert log.read_text().count("POST") > 0  # and the client's requests were logged
    assert not any(token in s for s in shown)
    assert token not in log.read_text()


def test_start_up_stays_light_until_the_first_remote_cell(kernel):
    # Kernel start, silent probes, local magics and completion import none of the heavy dependencies; the HTTP
    # client is loaded in the background once the kernel is up, so the first cell does not wait for it.
    _km, kc = kernel()
    run(kc, "import sys", silent=True)
    probe = "%%local\nimport sys\nprint('httpx' in sys.modules, 'aca_kernel._client' in sys.modules)"
    assert wait_until(lambda: text(run(kc, probe)[1]) == "True True\n", timeout=30, interval=0.3)
    run(kc, "%aca_session")
    run(kc, "%aca_config")
    kc.complete("pri", 3)
    kc.get_shell_msg(timeout=30)
    _, out = run(kc, "%%local\nimport sys\nprint(sorted({m.split('.')[0] for m in sys.modules} & "
                     "{'azure', 'ipywidgets', 'pandas', 'numpy', 'matplotlib', 'starlette'}))")
    assert text(out) == "[]\n"


def test_an_early_interrupt_on_a_pool_that_holds_file_calls_leaves_no_stop_file(kernel, kernelspecs, make_pool):
    # Such a pool serves the stop file only after the cell: the kernel stops waiting (the old behaviour) and
    # removes the stop file once it lands, instead of leaving it in /mnt/data.
    serial = make_pool("--serialize-files", "--ready", "0")
    pool_kernelspec(kernelspecs, "aca_test_serial_stop", serial)
    km, kc = kernel("aca_test_serial_stop")
    run(kc, "import time, os\nstarted = 'yes'")  # the session and its runtime; live output not yet tried
    msg_id = kc.execute("time.sleep(7)\nopen('/mnt/data/finished.txt', 'w').close()")
    while True:
        msg = kc.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "execute_input":
            break
    time.sleep(2)
    interrupted_at = time.monotonic()
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=60)
    print(f"interrupt to reply: {time.monotonic() - interrupted_at:.2f} s")
    assert reply["parent_header"]["msg_id"] == msg_id and reply["content"]["status"] == "error"
    said = reply["content"].get("evalue", "") + "\n".join(reply["content"]["traceback"])
    assert "it may still be running" in said
    drain(kc)
    reply, _ = run(kc, "started", timeout=60)  # waits behind the old cell, which was not stopped
    assert reply["status"] == "ok"
    from aca_kernel import SessionsClient

    with SessionsClient(serial.endpoint, serial.token, session_id=_identifier(kc)) as client:
        def names() -> list[str]:
            return [f.name for f in client.list_files()]

        assert "finished.txt" in names()
        assert wait_until(lambda: not [n for n in names() if n.startswith(".aca-live")], timeout=30), names()
