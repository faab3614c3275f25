"""Hostile requests and races get the service's error, in its JSON shape, with the right class; never a 500 for
the caller's mistake, never a plain-text answer, never a token check skipped."""

from __future__ import annotations

import concurrent.futures
import signal
import threading
import uuid

import httpx
import pytest
from _pool_http import V1, V2510, connect, error_code, q, v2_execute
from conftest import wait_until

pytestmark = pytest.mark.emulator_only


def _is_service_error(r: httpx.Response) -> bool:
    try:
        body = r.json()
    except ValueError:
        return False
    return isinstance(body.get("error"), dict) and {"code", "message"} <= set(body["error"]) \
        and r.headers.get("x-ms-error-code") == body["error"]["code"]


def test_json_nested_too_deep_is_a_400(pool):
    with connect(pool) as http:
        deep = b"[" * 100_000 + b"]" * 100_000
        for body in (deep, b'{"code": ' + deep + b"}"):
            r = http.post("executions", params=q(str(uuid.uuid4()), V2510), content=body,
                          headers={"Content-Type": "application/json"})
            assert r.status_code == 400 and _is_service_error(r), r.text


def test_a_lone_surrogate_in_code_is_a_400(pool):
    with connect(pool) as http:
        for path, body in (("executions", b'{"code": "x = \\"\\ud800\\""}'),
                           ("code/execute", b'{"properties": {"code": "\\udfff"}}')):
            version = V1 if path == "code/execute" else V2510
            r = http.post(path, params=q(str(uuid.uuid4()), version), content=body,
                          headers={"Content-Type": "application/json"})
            assert r.status_code == 400 and error_code(r) == "SessionRequestValidationFailed", r.text
            assert "surrogate" in r.json()["error"]["message"]


@pytest.mark.parametrize("path", ["files%0A", "%0Afiles", "files/a%0Ab/content", "x%0D%0Ay", "%0A"])
def test_a_newline_in_the_path_is_checked_for_the_token_and_answered_as_json(pool, path):
    params = q(str(uuid.uuid4()), V2510)
    anonymous = httpx.get(f"{pool.endpoint}/{path}", params=params, timeout=30)
    assert anonymous.status_code == 401 and _is_service_error(anonymous), anonymous.text
    with connect(pool) as http:
        r = http.get(path, params=params)
        assert r.status_code in (400, 404) and _is_service_error(r), r.text


def test_a_file_name_holding_a_newline_works(pool):
    with connect(pool) as http:
        ident = str(uuid.uuid4())
        assert v2_execute(http, ident, "open('/mnt/data/two\\nlines', 'w').write('ok')")["status"] == "Succeeded"
        assert http.get("files/two%0Alines/content", params=q(ident, V2510)).content == b"ok"


@pytest.mark.parametrize("method", ["PUT", "PATCH", "OPTIONS", "TRACE", "POST"])
def test_other_methods_and_paths_get_service_errors(pool, method):
    with connect(pool) as http:
        for path in ("openapi.json", "session", "files/x/content", "nowhere"):
            r = http.request(method, path, params=q(str(uuid.uuid4()), V2510))
            assert 400 <= r.status_code < 500 and _is_service_error(r), (method, path, r.text)


def test_deleting_a_session_while_its_kernel_starts_aborts_the_execution_in_json(make_pool):
    p = make_pool("--ready", "0")
    with connect(p) as http:
        ident = str(uuid.uuid4())
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            running = ex.submit(http.post, "executions", params=q(ident, V2510), json={"code": "1"})
            # the session exists (the execute created it) and its kernel is starting
            assert wait_until(lambda: any(f"new session {ident!r}" in line for line in p.output), timeout=30)
            assert http.delete("session", params=q(ident, V2510)).status_code == 204
            r = running.result(timeout=60)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "Failed"
        assert body["result"]["stderr"] == "Execution aborted: the session was deleted while the code ran."
    assert not any("Traceback" in line for line in p.output)


def test_sigterm_while_sessions_are_being_created_answers_json_and_leaves_no_folder(make_pool):
    p = make_pool("--ready", "0", "--max-sessions", "50")
    answers: list[httpx.Response | Exception] = []
    go = threading.Event()

    def create(_: int) -> None:
        with connect(p) as http:
            http.identifiers = set()  # the pool is stopping: nothing to clean up afterwards
            go.wait()
            try:
                answers.append(http.post("executions", params=q(str(uuid.uuid4()), V2510),
                                         json={"code": "import time; time.sleep(0.2)"}))
            except httpx.HTTPError as exc:  # a connection the stopping server closed: not an answer
                answers.append(exc)

    with concurrent.futures.ThreadPoolExecutor(12) as ex:
        futures = [ex.submit(create, i) for i in range(12)]
        go.set()
        assert wait_until(lambda: any("session kernel ready" in line for line in p.output), timeout=60)
        p.proc.send_signal(signal.SIGTERM)
        for f in futures:
            f.result(timeout=120)
    p.proc.wait(timeout=60)
    assert p.proc.returncode == 0
    responses = [a for a in answers if isinstance(a, httpx.Response)]
    assert responses
    for r in responses:
        assert r.headers.get("content-type", "").startswith("application/json"), r.text
        if r.status_code >= 500:
            assert _is_service_error(r), r.text
        else:
            assert r.status_code == 200, r.text
            assert r.json()["status"] in ("Succeeded", "Failed"), r.text
    assert [str(x) for x in p.data_dir.rglob("*")] == []


def test_the_client_says_a_full_pool_is_full_not_that_a_file_is_missing(make_pool):
    from aca_kernel import ResourceNotFoundError, SessionsClient

    p = make_pool("--ready", "0", "--max-sessions", "1")
    with SessionsClient(p.endpoint, p.token, api_version=V2510) as first, \
            SessionsClient(p.endpoint, p.token, api_version=V2510) as second:
        first.upload_file(b"x", "kept.txt")
        for call in (lambda: second.download_file("data.csv"), lambda: second.list_files(),
                     lambda: second.upload_file(b"y", "y.txt")):
            with pytest.raises(ResourceNotFoundError) as info:
                call()
            message = str(info.value)
            assert "session pool is full" in message and "not found" not in message.lower()
            assert info.value.error_code == "SessionPoolMaxSessionsReached"
        first.delete_session()


def test_the_client_says_what_a_413_on_an_execution_means(make_pool):
    from aca_kernel import RequestTooLarge, SessionsClient

    p = make_pool("--ready", "0")
    with SessionsClient(p.endpoint, p.token, api_version=V2510) as client:
        with pytest.raises(RequestTooLarge) as info:
            client.execute("x = '" + "a" * (40 << 20) + "'")
        assert "None" not in str(info.value) and "too large" in str(info.value)
