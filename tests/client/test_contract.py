"""Contract tests: the sync and async clients against a real emulator process over real HTTP.

Every test runs for both clients (``kind``) and both API generations; 2024-10-02-preview is added where its
202-then-poll execution path matters.
"""

from __future__ import annotations

import io
import logging
import os
import uuid

import pytest

import aca_kernel
from aca_kernel import ExecutionResult, ImageResult, RemoteFile

from .conftest import V1, V2, V2_202

VERSIONS = [V1, V2]


def unique(prefix: str = "f") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}.txt"


@pytest.mark.parametrize("api_version", [V1, V2_202, V2])
def test_execute_value_print_and_state(client_for, api_version):
    client = client_for(api_version)
    first = client.execute("x = 40\nprint('answer', x + 2)\nx")
    assert isinstance(first, ExecutionResult)
    assert first.succeeded and first.status == "succeeded"
    assert first.stdout == "answer 42\n"
    assert first.result == 40
    assert first.execution_time_ms is None or first.execution_time_ms >= 0
    # State persists across calls with the same identifier.
    assert client.execute("x + 2").result == 42
    if api_version != V1:
        assert first.execution_id


@pytest.mark.parametrize("api_version", VERSIONS)
def test_sub_second_timeout_is_sent_as_a_whole_second(client_for, api_version):
    # the service's timeoutInSeconds is a positive whole number: 0.5 must not go out as 0 (a 400)
    result = client_for(api_version).execute("6 * 7", timeout=0.5)
    assert result.succeeded and result.result == 42


@pytest.mark.parametrize("api_version", VERSIONS)
def test_execute_exception_is_a_result_not_an_error(client_for, api_version):
    result = client_for(api_version).execute("1/0")
    assert result.status == "failed" and not result.succeeded
    assert "ZeroDivisionError" in result.stderr
    assert result.result is None


@pytest.mark.parametrize("api_version", VERSIONS)
def test_execute_matplotlib_figure_is_an_image(client_for, api_version):
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [3, 1, 2])\nNone"
    result = client_for(api_version).execute(code)
    if not result.succeeded and "No module named 'matplotlib'" in result.stderr:
        pytest.skip("matplotlib is not installed in the pool's sessions")
    assert result.succeeded, result.stderr
    assert isinstance(result.result, ImageResult)
    assert result.image is result.result
    assert result.image.format == "png" and result.image.mimetype == "image/png"
    assert result.image.data.startswith(b"\x89PNG")


@pytest.mark.parametrize("api_version", VERSIONS)
def test_upload_path_download_path_and_bytes(client_for, api_version, tmp_path):
    client = client_for(api_version)
    local = tmp_path / "data.bin"
    payload = os.urandom(300_000)
    local.write_bytes(payload)
    name = unique("up")
    seen: list[tuple[int, int | None]] = []
    uploaded = client.upload_file(local, name, progress=lambda done, total: seen.append((done, total)))
    assert isinstance(uploaded, RemoteFile)
    assert uploaded.name == name and uploaded.size == len(payload) and uploaded.type == "file"
    assert seen and seen[-1] == (len(payload), len(payload))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)

    got: list[int] = []
    target = tmp_path / "back.bin"
    written = client.download_file(name, target, progress=lambda done, total: got.append(done))
    assert written == len(payload) and target.read_bytes() == payload
    assert got[-1] == len(payload)
    assert client.download_file(f"/mnt/data/{name}") == payload
    # The code sees the file where the service says files live.
    assert client.execute(f"len(open('/mnt/data/{name}', 'rb').read())").result == len(payload)


@pytest.mark.parametrize("api_version", VERSIONS)
def test_upload_bytes_and_file_object_download_to_file_object(client_for, api_version):
    client = client_for(api_version)
    name_a, name_b = unique("bytes"), unique("fobj")
    assert client.upload_file(b"hello bytes", name_a).size == 11
    source = io.BytesIO(b"skip:" + b"file object payload")
    source.seek(5)  # the upload starts at the current position
    progress: list[tuple[int, int | None]] = []
    assert client.upload_file(source, name_b, progress=lambda d, t: progress.append((d, t))).size == 19
    assert progress[-1] == (19, 19)
    sink = io.BytesIO()
    assert client.download_file(name_b, sink) == 19
    assert sink.getvalue() == b"file object payload"
    assert client.download_file(name_a) == b"hello bytes"


@pytest.mark.parametrize("api_version", VERSIONS)
def test_list_metadata_and_delete(client_for, api_version):
    client = client_for(api_version, fresh=True)
    assert client.list_files() == []
    client.upload_file(b"12345", "one.txt")
    client.upload_file(b"1234567", "two.csv")
    files = {f.name: f for f in client.list_files()}
    assert set(files) == {"one.txt", "two.csv"}
    assert files["two.csv"].size == 7 and files["two.csv"].last_modified is not None
    assert files["two.csv"].directory == "" and files["two.csv"].path == "two.csv"

    props = client.get_file_properties("/mnt/data/one.txt")
    assert props.name == "one.txt" and props.size == 5 and props.type == "file"

    client.delete_file("one.txt")
    assert [f.name for f in client.list_files()] == ["two.csv"]
    with pytest.raises(aca_kernel.ResourceNotFoundError):
        client.download_file("one.txt")
    with pytest.raises(aca_kernel.ResourceNotFoundError):
        client.get_file_properties("one.txt")
    with pytest.raises(aca_kernel.ResourceNotFoundError):
        client.delete_file("one.txt")


@pytest.mark.parametrize("api_version", VERSIONS)
def test_missing_file_is_404(client_for, api_version):
    client = client_for(api_version)
    with pytest.raises(aca_kernel.ResourceNotFoundError) as info:
        client.download_file(unique("missing"))
    assert info.value.status_code == 404
    assert "not found" in str(info.value)


@pytest.mark.parametrize("api_version", VERSIONS)
def test_names_that_need_encoding_round_trip(client_for, api_version):
    client = client_for(api_version)
    name = f"a b&c=d#e%f {uuid.uuid4().hex[:6]}.txt"
    client.upload_file(b"odd", name)
    assert client.download_file(name) == b"odd"
    assert name in {f.name for f in client.list_files()}


def test_subdirectories_v2(client_for, tmp_path):
    client = client_for(V2, fresh=True)
    up = client.upload_file(b"deep", "/mnt/data/sub/dir/x.txt")
    assert (up.directory, up.name, up.path) == ("sub/dir", "x.txt", "sub/dir/x.txt")
    client.upload_file(b"other", "y.txt", path="sub")
    assert client.download_file("sub/dir/x.txt") == b"deep"
    assert client.download_file("x.txt", path="sub/dir") == b"deep"
    listing = {f.name: f for f in client.list_files(path="sub")}
    assert listing["y.txt"].type == "file" and listing["y.txt"].directory == "sub"
    assert listing["dir"].type == "directory"
    deep = {f.path for f in client.list_files(recursive=True) if f.type == "file"}
    assert deep == {"sub/dir/x.txt", "sub/y.txt"}
    assert client.get_file_properties("sub/dir/x.txt").size == 4
    client.delete_file("x.txt", path="sub/dir")
    assert [f.name for f in client.list_files(path="sub/dir")] == []
    assert client.execute("import os; os.path.exists('/mnt/data/sub/y.txt')").result is True


def test_subdirectory_upload_v1(client_for):
    """2024-02-02-preview has no `path`: the multipart filename carries it; the listing is filtered here."""
    client = client_for(V1, fresh=True)
    up = client.upload_file(b"v1deep", "nested/z.txt")
    assert up.path == "nested/z.txt"
    assert client.download_file("nested/z.txt") == b"v1deep"
    assert client.execute("open('/mnt/data/nested/z.txt').read()").result == "v1deep"
    top = {f.name: f for f in client.list_files()}
    assert top["nested"].type == "directory"
    assert [f.path for f in client.list_files(path="nested")] == ["nested/z.txt"]
    assert client.get_file_properties("nested/z.txt").size == 6
    client.delete_file("nested/z.txt")
    assert client.execute("import os; os.path.exists('/mnt/data/nested/z.txt')").result is False


@pytest.mark.parametrize("api_version", ["2025-02-02-preview", V2])
def test_get_and_delete_session(client_for, api_version):
    client = client_for(api_version, fresh=True)
    client.upload_file(b"x", "keep.txt")
    info = client.get_session()
    assert info.identifier == client.session_id
    assert info.created_at is not None and info.expire_at is not None
    client.delete_session()
    client.delete_session()  # deleting a session that is gone is not an error
    assert client.list_files() == []  # the identifier now names a fresh, empty session


@pytest.mark.parametrize("api_version", [V1, V2_202])
def test_session_management_needs_2025_02(client_for, api_version):
    client = client_for(api_version)
    with pytest.raises(aca_kernel.NotSupportedError, match="2025-02-02-preview"):
        client.get_session()
    with pytest.raises(aca_kernel.NotSupportedError, match="2025-02-02-preview"):
        client.delete_session()


def test_wrong_token_is_401_with_sign_in_advice(pool, make_client):
    if pool.live:
        pytest.skip("the live pool's 401 needs a real bad token")
    client = make_client(pool.endpoint, "not-the-token", api_version=V2)
    with pytest.raises(aca_kernel.ClientAuthenticationError) as info:
        client.list_files()
    assert info.value.status_code == 401
    assert "az login" in str(info.value) and "not-the-token" not in str(info.value)


def test_no_log_line_of_any_library_carries_the_token(pool, make_client, caplog):
    """Real HTTP (httpx and httpcore at DEBUG, which MockTransport would bypass), a reply and an error."""
    token = pool.token
    if not token:
        pytest.skip("needs a static token (ACA_TOKEN) to look for")
    caplog.set_level(logging.DEBUG)
    client = make_client(pool.endpoint, token, api_version=V2)
    client.upload_file(b"x", "log.txt")
    client.list_files()
    with pytest.raises(aca_kernel.ResourceNotFoundError):
        client.download_file("missing.txt")
    client.delete_session()
    assert any(r.name.startswith("httpcore") for r in caplog.records)
    assert any(r.name == "aca_kernel.client" for r in caplog.records)
    assert token not in caplog.text


def test_named_pool_endpoint(pool, make_client):
    if pool.live:
        pytest.skip("emulator-only pool naming")
    client = make_client(pool.pool_endpoint("contract"), pool.token, api_version=V2)
    client.upload_file(b"named", "n.txt")
    assert client.download_file("n.txt") == b"named"


def test_secrets_in_the_endpoint_stay_out_of_reprs_and_error_messages(pool, make_client):
    """A SAS-style query string or user-info in the endpoint is sent, but never shown."""
    import socket

    secret = f"sig{uuid.uuid4().hex}"
    client = make_client(f"{pool.endpoint.rstrip('/')}/no/such/route/?sig={secret}", pool.token, api_version=V2)
    with pytest.raises(aca_kernel.ResourceNotFoundError) as info:
        client.list_files()  # a 404 without a file: the message names the endpoint
    assert "/no/such/route/" in str(info.value) and secret not in str(info.value)
    assert secret not in repr(client)
    with socket.socket() as s:  # a port nothing listens on: a real refused connection
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    closed = make_client(f"http://user:{secret}@127.0.0.1:{port}/pool?sig={secret}", "tok", max_retries=0)
    with pytest.raises(aca_kernel.ServiceRequestError) as info:
        closed.list_files()
    assert f"127.0.0.1:{port}/pool" in str(info.value) and secret not in str(info.value)
    assert secret not in repr(closed)
