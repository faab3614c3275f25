"""api-version 2024-02-02-preview ("v1") over real HTTP: envelopes, statuses, files, common validation."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from _pool_http import LIVE, V1, V2510, connect, emulator_only, error_code, new_id, q, v1_execute


@pytest.fixture
def http(pool):
    with connect(pool) as client:
        yield client


def test_execute_envelope_with_value_and_stdout(http):
    ident = new_id()
    r = http.post("code/execute", params=q(ident, V1), json={"properties": {
        "codeInputType": "inline", "executionType": "synchronous", "code": "x = 40\nprint('hi')\nx + 2"}})
    assert r.status_code == 200
    body = r.json()
    assert body["$id"] == "1"
    props = body["properties"]
    assert props["$id"] == "2"
    assert set(props) == {"$id", "status", "stdout", "stderr", "result", "executionTimeInMilliseconds"}
    assert props["status"] == "Success"
    assert props["stdout"] == "hi\n"
    assert props["stderr"] == ""
    assert props["result"] == 42
    assert isinstance(props["executionTimeInMilliseconds"], int)


def test_state_persists_and_no_value_is_empty_string(http):
    ident = new_id()
    assert v1_execute(http, ident, "y = 'kept'")["result"] == ""
    assert v1_execute(http, ident, "y")["result"] == "kept"


def test_python_error_is_http_200_failure(http):
    props = v1_execute(http, new_id(), "1/0")
    assert props["status"] == "Failure"
    assert props["result"] is None
    assert "ZeroDivisionError" in props["stderr"]
    assert "\x1b[" not in props["stderr"]


def test_sessions_are_separate(http):
    a, b = new_id(), new_id()
    v1_execute(http, a, "secret = 1")
    props = v1_execute(http, b, "secret")
    assert props["status"] == "Failure"
    assert "NameError" in props["stderr"]


def test_upload_list_download(http):
    ident = new_id()
    r = http.post("files/upload", params=q(ident, V1),
                  files=[("file", ("data.csv", b"a,b\n1,2\n", "application/octet-stream"))])
    assert r.status_code == 200, r.text
    body = r.json()
    entry = body["value"][0]
    if not LIVE:  # the upload reply's shape is inferred from client parsers, not captured
        assert (body["$id"], entry["$id"], entry["properties"]["$id"]) == ("1", "2", "3")
    assert entry["properties"]["filename"] == "data.csv"
    assert entry["properties"]["size"] == 8
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", entry["properties"]["lastModifiedTime"])

    listing = http.get("files", params=q(ident, V1)).json()
    assert [e["properties"]["filename"] for e in listing["value"]] == ["data.csv"]
    assert listing["value"][0]["properties"]["size"] == 8

    r = http.get("files/content/data.csv", params=q(ident, V1))
    assert r.status_code == 200
    assert r.content == b"a,b\n1,2\n"
    # the session's code sees the file in /mnt/data
    assert v1_execute(http, ident, "open('/mnt/data/data.csv').read()")["result"] == "a,b\n1,2\n"


def test_download_missing_file_is_404(http):
    r = http.get("files/content/nope.txt", params=q(new_id(), V1))
    assert r.status_code == 404


def test_new_identifier_lists_empty(http):
    r = http.get("files", params=q(new_id(), V1))
    assert r.status_code == 200
    assert r.json()["value"] == []


@emulator_only
def test_absolute_mnt_data_name_and_subdirectories(http):
    # LlamaIndex and Semantic Kernel send "/mnt/data/<name>" as the multipart filename.
    ident = new_id()
    r = http.post("files/upload", params=q(ident, V1),
                  files={"file": ("/mnt/data/up.txt", b"one", "application/octet-stream")})
    assert r.status_code == 200
    assert r.json()["value"][0]["properties"]["filename"] == "up.txt"
    r = http.post("files/upload", params=q(ident, V1),
                  files={"file": ("sub/dir/deep.txt", b"two", "application/octet-stream")})
    assert r.json()["value"][0]["properties"]["filename"] == "sub/dir/deep.txt"
    names = [e["properties"]["filename"] for e in http.get("files", params=q(ident, V1)).json()["value"]]
    assert sorted(names) == ["sub/dir/deep.txt", "up.txt"]
    assert http.get("files/content/sub/dir/deep.txt", params=q(ident, V1)).content == b"two"
    assert http.get(f"files/content/{quote('sub/dir/deep.txt', safe='')}", params=q(ident, V1)).content == b"two"
    assert v1_execute(http, ident, "open('/mnt/data/sub/dir/deep.txt').read()")["result"] == "two"


@emulator_only
def test_semantic_kernel_multipart_labelled_json(http):
    # SK Python leaks "Content-Type: application/json" onto its multipart upload; the boundary is sniffed.
    ident = new_id()
    boundary = "d1f0c2a7b9e84c5e9b1a"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"/mnt/data/sk.txt\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\nfrom sk\r\n--{boundary}--\r\n").encode()
    r = http.post("files/upload", params=q(ident, V1), content=body,
                  headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.json()["value"][0]["properties"]["filename"] == "sk.txt"
    assert http.get("files/content/sk.txt", params=q(ident, V1)).content == b"from sk"


def test_identifier_order_and_percent_encoding(pool, http):
    ident = "id|with&specials" + new_id()[:8]
    encoded = quote(ident, safe="")
    r = http.post(f"code/execute?api-version={V1}&identifier={encoded}",
                  json={"properties": {"codeInputType": "inline", "executionType": "synchronous", "code": "z = 5"}})
    assert r.status_code == 200
    r = http.post(f"code/execute?identifier={encoded}&api-version={V1}",
                  json={"properties": {"codeInputType": "inline", "executionType": "synchronous", "code": "z"}})
    assert r.json()["properties"]["result"] == 5
    # AutoGen and SK send the identifier raw (no encoding): fine when it has no '&' or '+'
    raw = "raw-" + new_id()
    r = http.post(f"code/execute?api-version={V1}&identifier={raw}",
                  json={"properties": {"codeInputType": "inline", "executionType": "synchronous", "code": "3"}})
    assert r.json()["properties"]["result"] == 3


def test_auth_required(pool):
    with connect(pool, token="") as anon:
        r = anon.get("files", params=q(new_id(), V1), headers={"Authorization": ""})
    assert r.status_code == 401
    with connect(pool, token="wrong-token") as wrong:
        r = wrong.get("files", params=q(new_id(), V1))
    assert r.status_code == 401


@emulator_only
def test_auth_error_shape_never_echoes_token(pool):
    with connect(pool, token="not-the-token-xyz") as wrong:
        r = wrong.get("files", params=q(new_id(), V1))
    assert r.status_code == 401
    assert error_code(r) == "Unauthorized"
    assert r.headers["x-ms-error-code"] == "Unauthorized"
    assert r.headers["x-ms-request-id"]
    assert "not-the-token-xyz" not in r.text
    assert pool.token not in r.text


@pytest.mark.parametrize("version", [None, "2023-01-01", "2024-02-02"])
def test_bad_api_version_is_400(http, version):
    params = {"identifier": new_id()}
    if version:
        params["api-version"] = version
    r = http.get("files", params=params)
    assert r.status_code == 400
    assert error_code(r) == "SessionRequestValidationFailed"


@emulator_only  # which identifiers the service refuses is UNKNOWN (reference §2.4)
@pytest.mark.parametrize("identifier", ["", "has space", "x" * 257, "tab\tbed"])
def test_bad_or_missing_identifier_is_400(http, identifier):
    params = {"api-version": V1}
    if identifier:
        params["identifier"] = identifier
    r = http.get("files", params=params)
    assert r.status_code == 400
    body = r.json()
    assert body["error"]["code"] == "SessionRequestValidationFailed"
    assert body["error"]["message"]


@emulator_only
def test_error_headers_and_not_supported(http):
    r = http.get("files", params={"api-version": "1999-01-01", "identifier": new_id()})
    assert r.headers["x-ms-error-code"] == "SessionRequestValidationFailed"
    assert r.json()["error"]["target"] == "api-version"
    # a v2 path with the v1 api-version, and the other way round
    r = http.post("executions", params=q(new_id(), V1), json={"code": "1"})
    assert (r.status_code, error_code(r)) == (404, "SessionRequestNotSupported")
    r = http.post("code/execute", params=q(new_id(), V2510), json={"properties": {"code": "1"}})
    assert (r.status_code, error_code(r)) == (404, "SessionRequestNotSupported")
    r = http.get("no/such/operation", params=q(new_id(), V1))
    assert (r.status_code, error_code(r)) == (404, "SessionRequestNotSupported")
    # wrong method on a known path
    r = http.put("files", params=q(new_id(), V1))
    assert (r.status_code, error_code(r)) == (400, "SessionRequestValidationFailed")


@emulator_only
def test_body_checks(http):
    ident = new_id()
    r = http.post("code/execute", params=q(ident, V1), content=b"{not json",
                  headers={"Content-Type": "application/json"})
    assert (r.status_code, error_code(r)) == (400, "SessionRequestValidationFailed")
    r = http.post("code/execute", params=q(ident, V1), json={"properties": {"codeInputType": "inline"}})
    assert (r.status_code, error_code(r)) == (400, "SessionRequestValidationFailed")
    assert r.json()["error"]["target"] == "code"
    # asynchronous is not available in this version
    r = http.post("code/execute", params=q(ident, V1), json={"properties": {
        "codeInputType": "inline", "executionType": "asynchronous", "code": "1"}})
    assert (r.status_code, error_code(r)) == (400, "SessionRequestValidationFailed")
    # extra keys (SAMPLES put identifier inside properties; SK adds timeoutInSeconds) and any casing work
    r = http.post("code/execute", params=q(ident, V1), json={"properties": {
        "CodeInputType": "Inline", "executionType": "Synchronous", "code": "6*7", "identifier": ident,
        "timeoutInSeconds": 100}})
    assert r.json()["properties"]["result"] == 42
    # a trailing slash (SK builds "code/execute/") is tolerated
    r = http.post("code/execute/", params=q(ident, V1), json={"properties": {"code": "1"}})
    assert r.status_code == 200


@emulator_only
def test_named_pools_are_separate(pool):
    ident = new_id()
    with connect(pool, pool.pool_endpoint("alpha")) as alpha, connect(pool, pool.pool_endpoint("beta")) as beta:
        v1_execute(alpha, ident, "where = 'alpha'")
        assert v1_execute(alpha, ident, "where")["result"] == "alpha"
        assert v1_execute(beta, ident, "where")["status"] == "Failure"
        alpha.post("files/upload", params=q(ident, V1), files={"file": ("a.txt", b"a")})
        assert beta.get("files", params=q(ident, V1)).json()["value"] == []
        assert beta.get("files/content/a.txt", params=q(ident, V1)).status_code == 404
