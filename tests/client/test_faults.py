"""Fault injection the emulator cannot produce: throttling, 5xx, dropped connections, bad bodies, 401/403.

These use httpx.MockTransport (the documented test seam) with a scripted ``FakeService``; backoff sleeps are
recorded, not waited for.
"""

from __future__ import annotations

import email.utils
import logging
import time

import httpx
import pytest

import aca_kernel

from .conftest import V2, v1_listing, v1_ok


def error(status: int, code: str = "Err", message: str = "went wrong", **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}}, headers=headers)


def test_429_with_retry_after_then_200(fake):
    client, service, sleeps = fake(error(429, "TooManyRequests", **{"Retry-After": "3"}), v1_listing("a.txt"))
    assert [f.name for f in client.list_files()] == ["a.txt"]
    assert len(service.requests) == 2 and sleeps.delays == [3.0]


def test_retry_after_as_http_date(fake):
    when = email.utils.formatdate(time.time() + 5, usegmt=True)
    client, _service, sleeps = fake(error(503, **{"Retry-After": when}), v1_listing())
    assert client.list_files() == []
    assert 3.0 <= sleeps.delays[0] <= 6.0


def test_503_retries_are_bounded_then_raise(fake):
    client, service, sleeps = fake(*[error(503, "Unavailable")] * 3, max_retries=2)
    with pytest.raises(aca_kernel.HttpResponseError) as info:
        client.download_file("x.txt")
    assert len(service.requests) == 3 and len(sleeps.delays) == 2
    assert info.value.status_code == 503 and info.value.error_code == "Unavailable"
    assert "after 2 retries" in str(info.value)


def test_backoff_is_full_jitter_exponential(fake):
    client, _service, sleeps = fake(*[error(502)] * 4, v1_listing(), max_retries=4)
    client._random = lambda: 1.0  # the top of each jitter window
    client.list_files()
    assert sleeps.delays == [0.5, 1.0, 2.0, 4.0]


def test_retry_total_timeout_bounds_the_waiting(fake):
    client, service, sleeps = fake(error(429, **{"Retry-After": "50"}), error(429, **{"Retry-After": "50"}),
                                   retry_total_timeout=60)
    with pytest.raises(aca_kernel.Throttled, match="wait and try again"):
        client.list_files()
    assert sleeps.delays == [50.0] and len(service.requests) == 2


def test_read_error_on_idempotent_call_is_retried(fake):
    client, service, _sleeps = fake(httpx.ReadError("reset"), v1_listing("z"))
    assert [f.name for f in client.list_files()] == ["z"]
    assert len(service.requests) == 2


def test_execute_not_retried_after_a_read_error(fake):
    client, service, sleeps = fake(httpx.ReadError("connection reset"))
    with pytest.raises(aca_kernel.ServiceRequestError) as info:
        client.execute("launch_missiles()")
    assert len(service.requests) == 1 and sleeps.delays == []
    assert info.value.may_have_executed is True
    assert "may have run" in str(info.value) and "not re-sent" in str(info.value)
    assert isinstance(info.value.__cause__, httpx.ReadError)


def test_execute_read_timeout_is_execution_timeout(fake):
    client, service, _sleeps = fake(httpx.ReadTimeout("slow"))
    with pytest.raises(aca_kernel.ExecutionTimeout, match="may have run") as info:
        client.execute("import time; time.sleep(1000)", timeout=10)
    assert len(service.requests) == 1 and info.value.may_have_executed
    assert "40 s" in str(info.value)  # timeoutInSeconds plus the 30 s margin


def test_execute_not_retried_on_503(fake):
    client, service, _sleeps = fake(error(503))
    with pytest.raises(aca_kernel.HttpResponseError):
        client.execute("x = 1")
    assert len(service.requests) == 1


def test_connect_error_on_execute_is_retried(fake):
    client, service, sleeps = fake(httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"), v1_ok(7))
    assert client.execute("7").result == 7
    assert len(service.requests) == 3 and len(sleeps.delays) == 2


def test_connect_errors_exhausted_say_nothing_ran(fake):
    client, service, _sleeps = fake(*[httpx.ConnectError("refused")] * 2, max_retries=1)
    with pytest.raises(aca_kernel.ServiceRequestError, match="Could not connect") as info:
        client.execute("x")
    assert info.value.may_have_executed is False and len(service.requests) == 2


def test_upload_not_retried_after_write_side_error_but_after_connect_error(fake):
    client, service, _sleeps = fake(httpx.ConnectError("refused"), v1_listing("u.txt"))
    assert client.upload_file(b"abc", "u.txt").name == "u.txt"
    assert len(service.requests) == 2
    assert all(r.content.endswith(b"--\r\n") and b"abc" in r.content for r in service.requests[1:])
    client, service, _sleeps = fake(httpx.ReadError("reset"))
    with pytest.raises(aca_kernel.ServiceRequestError):
        client.upload_file(b"abc", "u.txt")
    assert len(service.requests) == 1


@pytest.mark.parametrize("body", [b"<html>gateway</html>", b'{"unexpected": true}', b"[1, 2]"])
def test_malformed_2xx_reply(fake, body):
    client, _service, _sleeps = fake(httpx.Response(200, content=body))
    with pytest.raises(aca_kernel.MalformedResponseError) as info:
        client.execute("1")
    assert info.value.status_code == 200
    assert "\n" not in str(info.value)


def test_malformed_reply_excerpt_never_contains_the_token(fake):
    client, _service, _sleeps = fake(httpx.Response(200, content=b"echo: Bearer tok and tok again"))
    with pytest.raises(aca_kernel.MalformedResponseError) as info:
        client.list_files()
    assert "tok" not in str(info.value).replace("token", "")


def test_unknown_execution_status_is_malformed(fake):
    client, _service, _sleeps = fake(v1_ok(status="Exploded"))
    with pytest.raises(aca_kernel.MalformedResponseError, match="Exploded"):
        client.execute("1")


def test_401_message_names_scope_and_az_login(fake):
    client, _service, _sleeps = fake(error(401, "InvalidToken", "audience mismatch"))
    with pytest.raises(aca_kernel.ClientAuthenticationError) as info:
        client.execute("1")
    text = str(info.value)
    assert "az login" in text and "https://dynamicsessions.io/.default" in text and "audience mismatch" in text
    assert info.value.status_code == 401 and info.value.error_code == "InvalidToken"


def test_403_names_the_role(fake):
    client, _service, _sleeps = fake(httpx.Response(403, headers={"x-ms-error-code": "Forbidden",
                                                                "x-ms-request-id": "req-9"}))
    with pytest.raises(aca_kernel.PermissionDenied) as info:
        client.list_files()
    assert "Azure ContainerApps Session Executor" in str(info.value)
    assert (info.value.error_code, info.value.request_id) == ("Forbidden", "req-9")


def test_404_on_execute_points_at_endpoint_or_session(fake):
    client, _service, _sleeps = fake(httpx.Response(404, headers={"apim-request-id": "apim-1"}))
    with pytest.raises(aca_kernel.ResourceNotFoundError) as info:
        client.execute("1")
    assert "endpoint" in str(info.value) and "session" in str(info.value)
    assert info.value.request_id == "apim-1"


def test_400_is_request_validation_error(fake):
    client, _service, _sleeps = fake(error(400, "SessionRequestValidationFailed", "bad identifier"))
    with pytest.raises(aca_kernel.RequestValidationError) as info:
        client.list_files()
    assert info.value.error_code == "SessionRequestValidationFailed" and "bad identifier" in str(info.value)


def test_v2_202_running_is_polled_until_done(fake):
    running = httpx.Response(202, json={"id": "ex1", "identifier": "s", "executionType": "Synchronous",
                                        "status": "Running"}, headers={"Operation-Location": "x"})
    done = httpx.Response(200, json={"id": "ex1", "identifier": "s", "status": "Succeeded",
                                     "result": {"stdout": "hi\n", "stderr": "", "executionResult": 3,
                                                "executionTimeInMilliseconds": 5}})
    client, service, sleeps = fake(running, running, done, api_version=V2)
    result = client.execute("3")
    assert result.result == 3 and result.execution_id == "ex1"
    assert [r.url.path for r in service.requests] == ["/sp/executions", "/sp/executions/ex1",
                                                      "/sp/executions/ex1"]
    assert len(sleeps.delays) == 2


def test_v2_failed_execution_is_a_result(fake):
    failed = httpx.Response(200, json={"id": "e", "identifier": "s", "status": "Failed",
                                       "result": {"stdout": "", "stderr": "Execution aborted",
                                                  "executionResult": None}})
    client, _service, _sleeps = fake(failed, api_version=V2)
    result = client.execute("x = [0] * 10**12")
    assert result.status == "failed" and result.stderr == "Execution aborted"


def test_delete_session_404_counts_as_deleted(fake):
    client, service, _sleeps = fake(httpx.Response(404), api_version=V2)
    client.delete_session()
    assert service.requests[0].method == "DELETE" and service.requests[0].url.path == "/sp/session"


def test_download_restarts_when_the_body_breaks(fake, tmp_path):
    class Broken(httpx.SyncByteStream, httpx.AsyncByteStream):
        def __iter__(self):
            yield b"partial"
            raise httpx.ReadError("dropped")

        async def __aiter__(self):
            yield b"partial"
            raise httpx.ReadError("dropped")

    client, _service, _sleeps = fake(httpx.Response(200, stream=Broken()), httpx.Response(200, content=b"complete"))
    target = tmp_path / "out.txt"
    assert client.download_file("f.txt", target) == 8
    assert target.read_bytes() == b"complete"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no partial file left behind


def test_failed_download_leaves_existing_file_untouched(fake, tmp_path):
    target = tmp_path / "keep.txt"
    target.write_bytes(b"old")
    client, _service, _sleeps = fake(error(404))
    with pytest.raises(aca_kernel.ResourceNotFoundError):
        client.download_file("f.txt", target)
    assert target.read_bytes() == b"old" and len(list(tmp_path.iterdir())) == 1


def test_one_info_line_per_request_with_status_and_request_id(fake, caplog):
    caplog.set_level(logging.INFO, logger="aca_kernel")
    client, _service, _sleeps = fake(error(503, **{"x-ms-request-id": "rid-1"}),
                                     httpx.Response(200, json={"value": []}, headers={"x-ms-request-id": "rid-2"}))
    client.list_files()
    lines = [r.getMessage() for r in caplog.records if r.name == "aca_kernel.client"]
    requests = [line for line in lines if "->" in line and "retry" not in line]
    assert len(requests) == 2
    assert requests[0].startswith("GET /sp/files -> 503 (") and "request id rid-1" in requests[0]
    assert requests[1].startswith("GET /sp/files -> 200 (") and "request id rid-2" in requests[1]
    assert all("identifier" not in line and "tok" not in line for line in lines)


def test_body_that_breaks_midway_is_retried_for_idempotent_calls(fake):
    class Broken(httpx.SyncByteStream, httpx.AsyncByteStream):
        def __iter__(self):
            yield b'{"value": ['
            raise httpx.RemoteProtocolError("peer closed connection")

        async def __aiter__(self):
            yield b'{"value": ['
            raise httpx.RemoteProtocolError("peer closed connection")

    client, service, _sleeps = fake(httpx.Response(200, stream=Broken()), v1_listing("ok.txt"))
    assert [f.name for f in client.list_files()] == ["ok.txt"]
    assert len(service.requests) == 2


def test_undecodable_body_is_malformed(fake):
    bad_gzip = httpx.Response(200, stream=httpx.ByteStream(b"not gzip"), headers={"Content-Encoding": "gzip"})
    client, _service, _sleeps = fake(bad_gzip)
    with pytest.raises(aca_kernel.MalformedResponseError):
        client.list_files()
