"""Checks that happen before any request: configuration, identifiers, remote names, the 128 MB limit."""

from __future__ import annotations

import io
import os

import httpx
import pytest

import aca_kernel
from aca_kernel import ConfigurationError, InvalidArgumentError, SessionsClient
from aca_kernel._validation import split_remote_name, validate_session_id

from .conftest import V1, V2


def refuse(request: httpx.Request) -> httpx.Response:
    pytest.fail(f"no request may be sent, got {request.method} {request.url}")


@pytest.fixture
def offline(make_client):
    """A client whose transport fails the test if it is ever called."""

    def factory(api_version: str = V1, **kwargs):
        return make_client("https://pool.example/sp", "tok", api_version=api_version,
                           transport=httpx.MockTransport(refuse), **kwargs)

    return factory


# -- configuration --------------------------------------------------------------------------------------

def test_missing_endpoint_names_the_env_var(monkeypatch):
    monkeypatch.delenv("ACA_POOL_MANAGEMENT_ENDPOINT", raising=False)
    with pytest.raises(ConfigurationError, match="ACA_POOL_MANAGEMENT_ENDPOINT"):
        SessionsClient(credential="tok")


def test_environment_is_used_when_arguments_are_absent(monkeypatch):
    monkeypatch.setenv("ACA_POOL_MANAGEMENT_ENDPOINT", "https://env.example/pool?x=1")
    monkeypatch.setenv("ACA_API_VERSION", V2)
    monkeypatch.setenv("ACA_SESSION_ID", "env-session")
    monkeypatch.setenv("ACA_TOKEN", "env-token")
    with SessionsClient() as client:
        assert client.endpoint == "https://env.example/pool/?x=1"
        assert client.api_version == V2 and client.session_id == "env-session"
    with SessionsClient("https://arg.example/p/", api_version=V1, session_id="arg") as client:
        assert (client.endpoint, client.api_version, client.session_id) == ("https://arg.example/p/", V1, "arg")


def test_unknown_api_version_lists_known_ones():
    with pytest.raises(ConfigurationError) as info:
        SessionsClient("https://x.example/", "tok", api_version="2099-01-01")
    for version in aca_kernel.API_VERSIONS:
        assert version in str(info.value)


def _list_request(endpoint: str, session_id: str) -> httpx.Request:
    """The request ``list_files()`` puts on the wire (the exact URL bytes are what these tests check)."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"value": []})

    with SessionsClient(endpoint, "tok", session_id=session_id, transport=httpx.MockTransport(handler)) as client:
        client.list_files()
    assert len(seen) == 1
    return seen[0]


def test_endpoint_query_string_is_kept_on_the_wire():
    request = _list_request("https://x.example/pool?sig=abc", "s1")
    assert request.url.path == "/pool/files"
    assert dict(request.url.params) == {"sig": "abc", "identifier": "s1", "api-version": V1}


def test_default_session_id_is_a_uuid4_and_new_session_rotates():
    with SessionsClient("https://x.example/", "tok") as client:
        first = client.session_id
        assert len(first) == 36 and first[14] == "4"
        assert client.new_session() != first
        assert client.new_session("mine") == "mine" == client.session_id


def test_credential_of_the_wrong_type_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="TokenCredential"):
        SessionsClient("https://x.example/", credential=42)


# -- identifiers ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("good", ["a", "abc-DEF_123", "x" * 128, "id|&^%$#(){}[];<>"])
def test_identifier_accepted(good):
    assert validate_session_id(good) == good


@pytest.mark.parametrize("bad", ["", "x" * 129, "has space", "slash/no", "q?x", "dot.no", "é", "new\nline"])
def test_identifier_rejected_before_any_request(offline, bad):
    with pytest.raises(InvalidArgumentError, match="1-128 characters"):
        offline(session_id=bad)
    client = offline()
    with pytest.raises(InvalidArgumentError, match="1-128 characters"):
        client.session_id = bad
    with pytest.raises(InvalidArgumentError):
        client.new_session(bad)


def test_identifier_is_url_encoded_on_the_wire():
    request = _list_request("https://x.example/", "a&b#c%d")
    assert b"identifier=a%26b%23c%25d" in request.url.query
    assert request.url.params["identifier"] == "a&b#c%d"


# -- remote names -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "path", "expected"), [
    ("a.txt", None, ("", "a.txt")),
    ("/mnt/data/a.txt", None, ("", "a.txt")),
    ("sub/dir/a.txt", None, ("sub/dir", "a.txt")),
    ("a.txt", "/mnt/data/sub", ("sub", "a.txt")),
    ("x/a.txt", "sub", ("sub/x", "a.txt")),
    ("./a.txt", None, ("", "a.txt")),
])
def test_remote_names_split(name, path, expected):
    assert split_remote_name(name, path) == expected


@pytest.mark.parametrize(("name", "path"), [
    ("../etc/passwd", None), ("a/../../b", None), ("/etc/passwd", None), ("", None), ("/mnt/data/", None),
    ("a\x00b", None), ("a.txt", "../up"), ("a.txt", "/tmp"), ("/mnt/database/x", None),
])
def test_path_escape_rejected_before_any_request(offline, name, path):
    for api_version in (V1, V2):
        client = offline(api_version)
        with pytest.raises(InvalidArgumentError):
            client.download_file(name, path=path)
        with pytest.raises(InvalidArgumentError):
            client.upload_file(b"x", name, path=path)
        with pytest.raises(InvalidArgumentError):
            client.delete_file(name, path=path)
        with pytest.raises(InvalidArgumentError):
            client.get_file_properties(name, path=path)


def test_list_path_escape_rejected(offline):
    with pytest.raises(InvalidArgumentError, match=r"'\.\.'"):
        offline(V2).list_files(path="../x")


def test_recursive_listing_needs_2025_10(offline):
    with pytest.raises(aca_kernel.NotSupportedError, match="2025-10-02-preview"):
        offline("2025-02-02-preview").list_files(recursive=True)


def test_unnamed_upload_needs_a_remote_name(offline):
    with pytest.raises(InvalidArgumentError, match="remote_name"):
        offline().upload_file(b"data")


# -- 128 MB ----------------------------------------------------------------------------------------------

LIMIT = 128 * 1024 * 1024


def test_sparse_file_over_the_limit_refused_without_sending(offline, tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(LIMIT + 1)  # sparse: no disk space used
    with pytest.raises(InvalidArgumentError, match="128 MB"):
        offline().upload_file(big)
    with pytest.raises(InvalidArgumentError, match="128 MB"):
        offline(V2).upload_file(os.fspath(big), "x.bin")


class HugeFile(io.RawIOBase):
    """A seekable file object reporting a size over the limit; reading it fails the test."""

    name = "huge.bin"

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return 0

    def seek(self, offset: int, whence: int = 0) -> int:
        return LIMIT + 10 if whence == io.SEEK_END else offset

    def read(self, size: int = -1) -> bytes:
        pytest.fail("the file must not be read")


def test_file_object_over_the_limit_refused_without_reading(offline):
    with pytest.raises(InvalidArgumentError, match="128 MB") as info:
        offline().upload_file(HugeFile())
    assert "huge.bin" in str(info.value)


def test_exactly_the_limit_is_allowed_to_start(tmp_path):
    """The check is "over 128 MB": a file of exactly 128 MB goes out (here to a fake that reads its length)."""
    exact = tmp_path / "exact.bin"
    with open(exact, "wb") as f:
        f.truncate(LIMIT)
    lengths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        lengths.append(request.headers["content-length"])
        return httpx.Response(413, json={"error": {"code": "RequestEntityTooLarge", "message": "too big"}})

    with SessionsClient("https://x.example/", "tok", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(aca_kernel.RequestTooLarge, match="128 MB") as info:
            client.upload_file(exact)
    assert int(lengths[0]) > LIMIT and info.value.status_code == 413


def test_local_file_problems_are_invalid_arguments(offline, tmp_path):
    client = offline()
    with pytest.raises(InvalidArgumentError, match="Cannot read"):
        client.upload_file(tmp_path / "nope.txt")
    with pytest.raises(InvalidArgumentError, match="directory"):
        client.upload_file(tmp_path)
    with open(tmp_path / "t.txt", "w") as text:
        with pytest.raises(InvalidArgumentError, match="'rb'"):
            client.upload_file(text, "t.txt")
        with pytest.raises(InvalidArgumentError, match="'wb'"):
            client.download_file("t.txt", text)
    with pytest.raises(InvalidArgumentError, match="Cannot write"):
        client.download_file("t.txt", tmp_path / "no" / "such" / "dir.txt")
