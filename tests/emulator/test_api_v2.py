"""api-versions 2024-10-02-preview, 2025-02-02-preview and 2025-10-02-preview ("v2") over real HTTP."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from _pool_http import (
    V1,
    V2,
    V2410,
    V2502,
    V2510,
    connect,
    emulator_only,
    error_code,
    new_id,
    q,
    v1_execute,
    v2_execute,
)
from conftest import wait_until


@pytest.fixture
def http(pool):
    with connect(pool) as client:
        yield client


@pytest.mark.parametrize("version", V2)
def test_execute_shape_and_status_per_version(http, version):
    ident = new_id()
    r = http.post("executions", params=q(ident, version), json={
        "codeInputType": "Inline", "executionType": "Synchronous", "code": "print('hi')\n6*7",
        "timeoutInSeconds": 60})
    # 2024-10-02-preview answers 202 (spec), later versions 200 (spec, observed)
    assert r.status_code == (202 if version == V2410 else 200)
    body = r.json()
    assert {"id", "identifier", "executionType", "status", "result"} <= set(body)
    assert body["identifier"] == ident
    assert body["executionType"] == "Synchronous"
    assert body["status"] == "Succeeded"
    result = body["result"]
    assert result["stdout"] == "hi\n"
    assert result["stderr"] == ""
    assert result["executionResult"] == 42
    assert isinstance(result["executionTimeInMilliseconds"], int)


@emulator_only
def test_execute_headers_and_ids(http):
    ident = new_id()
    r = http.post("executions", params=q(ident, V2410), json={"code": "1", "codeInputType": "Inline",
                                                               "executionType": "Synchronous"})
    assert r.headers["operation-id"] == r.json()["id"]
    assert r.headers["Operation-Location"].endswith(
        f"/executions/{r.json()['id']}?api-version={V2410}&identifier={quote(ident, safe='')}")
    assert r.json()["$id"] == "1"
    assert r.json()["result"]["$id"] == "2"
    # a client-chosen operation-id names the execution
    r = http.post("executions", params=q(ident, V2510), headers={"operation-id": "my-op-1"},
                  json={"code": "2", "codeInputType": "Inline", "executionType": "Synchronous"})
    assert r.json()["id"] == "my-op-1"
    assert http.get("executions/my-op-1", params=q(ident, V2510)).json()["result"]["executionResult"] == 2


def test_failure_is_http_200_failed(http):
    body = v2_execute(http, new_id(), "{}['sales_amount']")
    assert body["status"] == "Failed"
    assert "KeyError: 'sales_amount'" in body["result"]["stderr"]
    assert body["result"]["executionResult"] is None


def test_lowercase_values_and_missing_timeout(http):
    # OBS c: "inline"/"synchronous" and no timeoutInSeconds work on 2025-10-02-preview
    r = http.post("executions", params=q(new_id(), V2510),
                  json={"codeInputType": "inline", "executionType": "synchronous", "code": "1+1"})
    assert r.status_code == 200
    assert r.json()["result"]["executionResult"] == 2


def test_wrapped_body_rejected_on_2025_10(http):
    r = http.post("executions", params=q(new_id(), V2510), json={"properties": {
        "codeInputType": "Inline", "executionType": "Synchronous", "code": "1"}})
    assert r.status_code == 400
    assert error_code(r) == "SessionPropertiesMissing"


@emulator_only
def test_wrapped_body_tolerated_before_2025_10(http):
    r = http.post("executions", params=q(new_id(), V2502), json={"properties": {
        "codeInputType": "Inline", "executionType": "Synchronous", "code": "3"}})
    assert r.status_code == 200
    assert r.json()["result"]["executionResult"] == 3


@pytest.mark.parametrize("version", [V2410, V2510])
def test_asynchronous_execution_and_poll(http, version):
    ident = new_id()
    r = http.post("executions", params=q(ident, version), json={
        "codeInputType": "Inline", "executionType": "Asynchronous",
        "code": "import time\ntime.sleep(1)\nprint('done')\n'v'"})
    assert r.status_code in (200, 202)
    body = r.json()
    assert body["executionType"] == "Asynchronous"
    assert body["status"] in ("NotStarted", "Running")
    assert r.headers["operation-id"] == body["id"]
    assert "Operation-Location" in r.headers

    def finished():
        got = http.get(f"executions/{body['id']}", params=q(ident, version))
        assert got.status_code == 200
        return got.json() if got.json()["status"] not in ("NotStarted", "Running") else None

    final = wait_until(finished, timeout=60)
    assert final["status"] == "Succeeded"
    assert final["result"]["stdout"] == "done\n"
    assert final["result"]["executionResult"] == "v"


def test_unknown_execution_is_404(http):
    r = http.get("executions/00000000-0000-0000-0000-000000000000", params=q(new_id(), V2510))
    assert r.status_code == 404


def test_files_upload_list_metadata_content_delete(http):
    ident = new_id()
    r = http.post("files", params=q(ident, V2510), files={"file": ("test-file.txt", b"hello", "text/plain")})
    assert r.status_code == 200, r.text
    up = r.json()
    assert up["name"] == "test-file.txt"
    assert up["sizeInBytes"] == 5
    assert up["type"].lower() == "file"
    assert "lastModifiedAt" in up

    listing = http.get("files", params=q(ident, V2510)).json()
    assert [e["name"] for e in listing["value"]] == ["test-file.txt"]
    meta = http.get("files/test-file.txt", params=q(ident, V2510)).json()
    assert meta["sizeInBytes"] == 5
    assert http.get("files/test-file.txt/content", params=q(ident, V2510)).content == b"hello"

    r = http.delete("files/test-file.txt", params=q(ident, V2510))
    assert r.status_code == 204
    assert r.content == b""
    assert http.get("files", params=q(ident, V2510)).json()["value"] == []
    assert http.get("files/test-file.txt/content", params=q(ident, V2510)).status_code == 404
    assert http.get("files/test-file.txt", params=q(ident, V2510)).status_code == 404


@emulator_only
def test_file_shapes_per_version(http):
    ident = new_id()
    http.post("files", params=q(ident, V2410), files={"file": ("a.txt", b"x")})
    http.post("files", params=q(ident, V2410, path="d"), files={"file": ("b.txt", b"yy")})
    old = http.get("files", params=q(ident, V2410)).json()
    assert old["$id"] == "1"
    assert [(e["name"], e["type"]) for e in old["value"]] == [("a.txt", "file"), ("d", "directory")]
    assert "directory" not in old["value"][0]
    assert old["value"][0]["contentType"] == "text/plain; charset=utf-8"
    assert "sizeInBytes" not in old["value"][1]
    new = http.get("files", params=q(ident, V2510)).json()
    assert [e["directory"] for e in new["value"]] == ["", ""]
    # recursive needs 2025-10-02-preview
    r = http.get("files", params=q(ident, V2502, recursive="true"))
    assert (r.status_code, error_code(r)) == (400, "SessionRequestValidationFailed")


def test_path_parameter_and_recursive_listing(http):
    ident = new_id()
    r = http.post("files", params=q(ident, V2510, path="level1/level2"),
                  files={"file": ("testfile.yaml", b"a: 1", "application/octet-stream")})
    assert r.status_code == 200, r.text
    top = http.get("files", params=q(ident, V2510)).json()["value"]
    assert [(e["name"], e["type"].lower()) for e in top] == [("level1", "directory")]
    inner = http.get("files", params=q(ident, V2510, path="level1/level2")).json()["value"]
    assert [e["name"] for e in inner] == ["testfile.yaml"]
    everything = http.get("files", params=q(ident, V2510, recursive="true")).json()["value"]
    files = [e for e in everything if e["type"].lower() == "file"]
    assert [(e["name"], e["directory"]) for e in files] == [("testfile.yaml", "level1/level2")]
    content = http.get("files/testfile.yaml/content", params=q(ident, V2510, path="level1/level2"))
    assert content.content == b"a: 1"


@emulator_only
def test_absolute_path_parameter(http):
    # LangChain's bash tool uploads with path=/mnt/data
    ident = new_id()
    r = http.post("files", params=q(ident, V2502, path="/mnt/data"), files={"file": ("lc.txt", b"lc")})
    assert r.status_code == 200
    assert r.json()["name"] == "lc.txt"
    assert http.get(f"files/{quote('lc.txt')}/content", params=q(ident, V2502)).content == b"lc"
    # a percent-encoded slash in the name addresses a subdirectory
    http.post("files", params=q(ident, V2502, path="sub"), files={"file": ("s.txt", b"s")})
    assert http.get(f"files/{quote('sub/s.txt', safe='')}/content", params=q(ident, V2502)).content == b"s"


def test_session_get_and_delete(http):
    ident = new_id()
    v2_execute(http, ident, "keep = 1", V2502)
    http.post("files", params=q(ident, V2502), files={"file": ("gone.txt", b"bye")})
    r = http.get("session", params=q(ident, V2502))
    assert r.status_code == 200
    info = r.json()
    assert info["identifier"] == ident
    for key in ("createdAt", "lastAccessedAt", "expireAt"):
        assert key in info
    r = http.delete("session", params=q(ident, V2510))
    assert r.status_code == 204
    assert http.get("files", params=q(ident, V2510)).json()["value"] == []
    assert http.get("files/gone.txt/content", params=q(ident, V2510)).status_code == 404
    assert v2_execute(http, ident, "keep")["status"] == "Failed"


@emulator_only
def test_session_management_needs_2025_02(http):
    r = http.get("session", params=q(new_id(), V2410))
    assert (r.status_code, error_code(r)) == (404, "SessionRequestNotSupported")
    r = http.delete("session", params=q(new_id(), V2410))
    assert (r.status_code, error_code(r)) == (404, "SessionRequestNotSupported")


@emulator_only
def test_list_sessions_and_metadata(pool):
    ident = new_id()
    with connect(pool, pool.pool_endpoint("listing")) as http:
        http.get("files", params=q(ident, V2510))
        r = http.get("listSessions", params=q(None, V2510))
        assert r.status_code == 200
        body = r.json()
        assert [s["identifier"] for s in body["value"]] == [ident]
        assert body["sessions"] == body["value"]
        assert body["count"] == 1
        assert body["nextLink"] is None
        r = http.get("metadata", params=q(None, V2502))
        assert r.status_code == 200
        meta = r.json()
        assert meta["runtimes"][0]["name"] == "Python"
        assert any(p["name"].lower() == "ipykernel" for p in meta["preInstalledPackages"])
        assert meta["jupyterKernel"]["name"] == "ipykernel"


@emulator_only
def test_delete_unknown_session_is_204_and_creates_nothing(pool):
    ident = new_id()
    with connect(pool, pool.pool_endpoint("deletes")) as http:
        assert http.delete("session", params=q(ident, V2510)).status_code == 204
        assert http.get("listSessions", params=q(None, V2510)).json()["value"] == []


@emulator_only
def test_parameters_a_version_lacks_are_refused(http):
    from _pool_http import V1

    r = http.get("files", params=q(new_id(), V1, path="sub"))
    assert (r.status_code, error_code(r)) == (400, "SessionRequestValidationFailed")
    r = http.post("files/upload", params=q(new_id(), V1, path="sub"), files={"file": ("x.txt", b"x")})
    assert r.status_code == 400
    # v2 uploads take one file per request
    r = http.post("files", params=q(new_id(), V2510),
                  files=[("file", ("one.txt", b"1")), ("file", ("two.txt", b"2"))])
    assert (r.status_code, error_code(r)) == (400, "SessionRequestValidationFailed")
    assert http.get("files", params=q(r.request.url.params["identifier"], V2510)).json()["value"] == []
    # codeInputType values whose meaning is unknown are refused, not guessed
    r = http.post("executions", params=q(new_id(), V2510),
                  json={"codeInputType": "InlineBase64", "executionType": "Synchronous", "code": "MQ=="})
    assert (r.status_code, error_code(r)) == (400, "SessionRequestValidationFailed")
    r = http.post("executions", params=q(new_id(), V2510), json={"code": "1", "timeoutInSeconds": 0})
    assert r.status_code == 400


def test_executions_in_one_session_run_one_at_a_time(http):
    ident = new_id()
    first = http.post("executions", params=q(ident, V2510), json={
        "codeInputType": "Inline", "executionType": "Asynchronous",
        "code": "import time\ntime.sleep(1)\nshared = 'first'"}).json()
    # sent while the first still runs: it waits for it, so it sees what the first defined
    second = v2_execute(http, ident, "shared")
    assert second["status"] == "Succeeded", second["result"]["stderr"]
    assert second["result"]["executionResult"] == "first"
    assert http.get(f"executions/{first['id']}", params=q(ident, V2510)).json()["status"] == "Succeeded"


# -- outputStreamsMaxLength (reference §5.1: 4096 by default in v2 [INFERRED]; v1 [UNKNOWN]) -----------------

LONG_STREAMS = "import sys\nprint('o' * 5000)\nprint('e' * 5000, file=sys.stderr)\n'v' * 5000"


@pytest.mark.parametrize("version", V2)
def test_streams_cut_at_4096_characters_by_default(http, version):
    ident = new_id()
    body = v2_execute(http, ident, LONG_STREAMS, version)
    assert body["status"] == "Succeeded"
    result = body["result"]
    assert result["stdout"] == "o" * 4096
    assert result["stderr"] == "e" * 4096
    assert result["executionResult"] == "v" * 5000  # the value is not a stream: never cut
    # the recorded execution is the cut one too
    polled = http.get(f"executions/{body['id']}", params=q(ident, version)).json()["result"]
    assert (polled["stdout"], polled["stderr"]) == ("o" * 4096, "e" * 4096)


@pytest.mark.parametrize("version", V2)
def test_explicit_output_streams_max_length_is_honoured(http, version):
    ident = new_id()
    body = v2_execute(http, ident, LONG_STREAMS, version, outputStreamsMaxLength=10_000)
    assert body["result"]["stdout"] == "o" * 5000 + "\n"
    assert body["result"]["stderr"] == "e" * 5000 + "\n"
    body = v2_execute(http, ident, LONG_STREAMS, version, outputStreamsMaxLength=10)
    assert (body["result"]["stdout"], body["result"]["stderr"]) == ("o" * 10, "e" * 10)


@emulator_only
def test_asynchronous_execution_is_cut_as_requested(http):
    ident = new_id()
    r = http.post("executions", params=q(ident, V2510), json={
        "codeInputType": "Inline", "executionType": "Asynchronous", "code": "print('a' * 100)",
        "outputStreamsMaxLength": 7})

    def finished():
        got = http.get(f"executions/{r.json()['id']}", params=q(ident, V2510)).json()
        return got if got["status"] != "Running" else None

    assert wait_until(finished, timeout=60)["result"]["stdout"] == "a" * 7


@emulator_only
def test_v1_streams_are_not_cut(http):
    # Whether 2024-02-02-preview cuts is unknown: the emulator takes the tolerant reading, even when asked.
    props = v1_execute(http, new_id(), LONG_STREAMS)
    assert props["stdout"] == "o" * 5000 + "\n"
    assert props["stderr"] == "e" * 5000 + "\n"
    r = http.post("code/execute", params=q(new_id(), V1), json={"properties": {
        "codeInputType": "inline", "executionType": "synchronous", "code": "print('o' * 5000)",
        "outputStreamsMaxLength": 10}})
    assert r.json()["properties"]["stdout"] == "o" * 5000 + "\n"


@emulator_only
@pytest.mark.parametrize("version", V2)
@pytest.mark.parametrize("bad", [0, -1, 1.5, "4096", True, [4096]])
def test_bad_output_streams_max_length_is_400(http, version, bad):
    r = http.post("executions", params=q(new_id(), version), json={
        "codeInputType": "Inline", "executionType": "Synchronous", "code": "print('never run')",
        "outputStreamsMaxLength": bad})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "SessionRequestValidationFailed"
    assert r.json()["error"]["target"] == "outputStreamsMaxLength"
    assert r.headers["x-ms-error-code"] == "SessionRequestValidationFailed"
