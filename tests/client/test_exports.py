"""The public surface: flat ``__all__``, sync/async parity, models."""

from __future__ import annotations

import base64
import inspect
from datetime import datetime, timezone

import pytest

import aca_kernel
import aca_kernel.aio
from aca_kernel import _models
from aca_kernel._exceptions import ACASessionsError, HttpResponseError, ServiceRequestError

PUBLIC_METHODS = ["execute", "start_execution", "get_execution", "upload_file", "download_file", "list_files",
                  "get_file_properties", "delete_file", "get_session", "delete_session", "list_sessions",
                  "get_pool_metadata", "close"]


def test_all_names_resolve_and_show_the_package():
    assert aca_kernel.__version__ == "0.1.0"
    for name in aca_kernel.__all__:
        obj = getattr(aca_kernel, name)
        if isinstance(obj, type):
            assert obj.__module__ == "aca_kernel", name
    assert aca_kernel.aio.__all__ == ["Execution", "SessionsClient"]
    assert aca_kernel.aio.Execution.__module__ == "aca_kernel.aio"


def test_error_tree():
    assert issubclass(aca_kernel.InvalidArgumentError, ValueError)
    assert issubclass(aca_kernel.ExecutionTimeout, ServiceRequestError)
    for name in ["RequestValidationError", "ClientAuthenticationError", "PermissionDenied",
                 "ResourceNotFoundError", "RequestTooLarge", "Throttled", "MalformedResponseError"]:
        assert issubclass(getattr(aca_kernel, name), HttpResponseError)
    for name in ["ConfigurationError", "NotSupportedError", "ServiceRequestError", "HttpResponseError"]:
        assert issubclass(getattr(aca_kernel, name), ACASessionsError)
    err = aca_kernel.Throttled("too\nmany\n  requests", status_code=429, error_code="X", request_id="r")
    assert str(err) == "too many requests" and (err.status_code, err.error_code, err.request_id) == (429, "X", "r")


def test_sync_and_async_clients_are_parallel():
    sync, aio = aca_kernel.SessionsClient, aca_kernel.aio.SessionsClient
    assert inspect.signature(sync.__init__).parameters.keys() == inspect.signature(aio.__init__).parameters.keys()
    for name in PUBLIC_METHODS:
        s, a = getattr(sync, name), getattr(aio, name)
        assert not inspect.iscoroutinefunction(s) and inspect.iscoroutinefunction(a), name
        assert list(inspect.signature(s).parameters) == list(inspect.signature(a).parameters), name
    assert hasattr(aio, "__aenter__") and hasattr(sync, "__enter__")
    # The execution handle: the same names, coroutines in the async one.
    for name in ("wait", "refresh"):
        s, a = getattr(aca_kernel.Execution, name), getattr(aca_kernel.aio.Execution, name)
        assert not inspect.iscoroutinefunction(s) and inspect.iscoroutinefunction(a), name
        assert list(inspect.signature(s).parameters) == list(inspect.signature(a).parameters), name


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-05-02T07:21:07.9922617Z", datetime(2024, 5, 2, 7, 21, 7, 992261, tzinfo=timezone.utc)),
    ("2025-01-05T22:18:41.752Z", datetime(2025, 1, 5, 22, 18, 41, 752000, tzinfo=timezone.utc)),
    ("2024-05-29T00:00:00+00:00", datetime(2024, 5, 29, tzinfo=timezone.utc)),
    (None, None),
])
def test_timestamps_with_seven_fractional_digits(text, expected):
    assert _models.parse_datetime(text) == expected


@pytest.mark.parametrize(("status", "state"), [("Success", "succeeded"), ("Succeeded", "succeeded"),
                                               ("Failure", "failed"), ("Failed", "failed"),
                                               ("Running", "pending"), ("NotStarted", "pending")])
def test_status_mapping(status, state):
    assert _models.execution_state(status) == state


def test_image_result_and_v2_shapes():
    png = base64.b64encode(b"\x89PNG...").decode()
    r = _models.execution_from_v2({"id": "e", "status": "Succeeded",
                                   "result": {"stdout": "", "stderr": "", "executionResult":
                                              {"type": "image", "format": "png", "base64_data": png}}})
    assert r.image is not None and r.image.data == b"\x89PNG..." and r.image.mimetype == "image/png"
    assert png not in repr(r)  # big payloads stay out of reprs
    f = _models.file_from_v2({"name": "t.yaml", "directory": "l1/l2", "type": "File", "sizeInBytes": 4,
                              "lastModifiedAt": "2024-05-29T00:00:00.000Z"}, "base")
    assert (f.path, f.type, f.size) == ("base/l1/l2/t.yaml", "file", 4)
    d = _models.file_from_v2({"name": "dir", "type": "Directory"})
    assert d.type == "directory" and d.size is None
    s = _models.session_from_v2({"identifier": "i", "expiresAt": "2025-01-05T22:18:41.752Z"})
    assert s.expire_at is not None and s.etag is None


def test_v1_listing_accepts_absolute_names():
    f = _models.file_from_v1({"properties": {"filename": "/mnt/data/sub/x.txt", "size": 3}})
    assert (f.directory, f.name, f.last_modified) == ("sub", "x.txt", None)


def test_v1_listing_is_filtered_by_directory_with_directory_entries():
    body = {"value": [{"properties": {"filename": n, "size": 1}} for n in ["top.txt", "a/x.txt", "a/b/y.txt"]]}
    root = _models.file_listing(body, False, "", False)
    assert [(f.path, f.type) for f in root] == [("top.txt", "file"), ("a", "directory")]
    sub = _models.file_listing(body, False, "a", False)
    assert [(f.path, f.type) for f in sub] == [("a/x.txt", "file"), ("a/b", "directory")]
    assert [f.path for f in _models.file_listing(body, False, "a", True)] == ["a/x.txt", "a/b/y.txt"]
