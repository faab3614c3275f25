"""The rest of the service's API: sanitize_input, list_sessions, get_pool_metadata, asynchronous executions.

Each call runs, sync and async, on every api-version that has it against the real local pool, and raises
``NotSupportedError`` naming the first version that has it on those that do not. Paging and the operation-id
recovery path use a recording transport over real HTTP; ``MockTransport`` serves only a hostile ``nextLink``.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from typing import Any

import httpx
import pytest

import aca_kernel
from aca_kernel import NotSupportedError

from .conftest import V1, V2, V2_202, AsyncRecording, Recording

V2_2502 = "2025-02-02-preview"
ALL = [V1, V2_202, V2_2502, V2]
POOL_LEVEL = [V2_2502, V2]          # listSessions, metadata
ASYNC_EXECUTIONS = [V2_202, V2_2502, V2]

FENCED = "\n```python\n    answer = 6 * 7\n    answer\n```\n"


def settle(client: Any, value: Any) -> Any:
    """``value``, awaited on the async client's loop when it is a coroutine (aio ``Execution`` methods)."""
    if inspect.isawaitable(value):
        return client._loop.run_until_complete(value)
    return value


@pytest.mark.parametrize("api_version", ALL)
def test_sanitize_input_strips_a_fence_and_is_off_by_default(client_for, api_version):
    client = client_for(api_version)
    result = client.execute(FENCED, sanitize_input=True)
    assert result.succeeded, result.stderr
    assert result.result == 42
    raw = client.execute(FENCED)  # sent as written: the fence is a syntax error in Python
    assert raw.status == "failed" and "SyntaxError" in raw.stderr


@pytest.mark.parametrize("api_version", POOL_LEVEL)
def test_list_sessions_includes_a_used_session(client_for, api_version):
    client = client_for(api_version, fresh=True)
    client.list_files()  # any call creates the session
    sessions = client.list_sessions()
    mine = [s for s in sessions if s.identifier == client.session_id]
    assert len(mine) == 1
    assert mine[0].created_at is not None and mine[0].expire_at is not None
    assert mine[0].expire_at > mine[0].created_at


@pytest.mark.parametrize("api_version", POOL_LEVEL)
def test_get_pool_metadata(client_for, api_version):
    meta = client_for(api_version).get_pool_metadata()
    assert isinstance(meta, aca_kernel.PoolMetadata)
    assert meta.runtimes.get("Python", "").count(".") >= 1
    assert meta.packages and all(isinstance(v, str) for v in meta.packages.values())
    assert meta.jupyter_kernel is not None and meta.jupyter_kernel["name"] == "ipykernel"
    assert meta.created_at is not None
    assert "preInstalledPackages" in meta.raw


@pytest.mark.parametrize("api_version", [V1, V2_202])
def test_pool_level_calls_name_the_version_that_has_them(client_for, api_version):
    client = client_for(api_version)
    for call, name in ((client.list_sessions, "list_sessions()"), (client.get_pool_metadata, "get_pool_metadata()")):
        with pytest.raises(NotSupportedError) as info:
            call()
        assert str(info.value).startswith(f"{name} needs api-version {V2_2502} or later; this client uses "
                                          f"{api_version}")


def test_asynchronous_executions_name_the_version_that_has_them(client_for):
    client = client_for(V1)
    with pytest.raises(NotSupportedError, match=f"start_execution\\(\\) needs api-version {V2_202} or later"):
        client.start_execution("1")
    with pytest.raises(NotSupportedError, match=f"get_execution\\(\\) needs api-version {V2_202} or later"):
        client.get_execution("some-id")


@pytest.mark.parametrize("api_version", ASYNC_EXECUTIONS)
def test_start_wait_and_get_an_execution(client_for, api_version):
    client = client_for(api_version, fresh=True)
    execution = client.start_execution("import time\ntime.sleep(0.5)\nstarted = 'yes'\nprint('ran')\n6 * 7")
    assert execution.id and execution.session_id == client.session_id
    assert execution.status in ("running", "succeeded")
    result = settle(client, execution.wait())
    assert execution.done and execution.status == "succeeded" and execution.result is result
    assert (result.stdout, result.result, result.execution_id) == ("ran\n", 42, execution.id)
    again = client.get_execution(execution.id)
    assert again.done and again.result is not None and again.result.result == 42
    assert settle(client, again.wait()) is again.result  # done already: no request
    # It ran in the session: its state is there for the next (synchronous) call.
    assert client.execute("started").result == "yes"


@pytest.mark.parametrize("api_version", [V2_202, V2])
def test_a_failing_asynchronous_execution_is_a_result(client_for, api_version):
    client = client_for(api_version)
    execution = client.start_execution("1/0")
    result = settle(client, execution.wait())
    assert result.status == "failed" and "ZeroDivisionError" in result.stderr
    assert execution.status == "failed"


def test_wait_past_its_timeout_leaves_the_execution_running(client_for):
    client = client_for(V2, fresh=True)
    execution = client.start_execution("import time\ntime.sleep(3)\n'late'", timeout=60)
    with pytest.raises(aca_kernel.ExecutionTimeout) as info:
        settle(client, execution.wait(timeout=0.2))
    assert info.value.may_have_executed
    assert "still running" in str(info.value) and "wait() again" in str(info.value)
    assert not execution.done
    assert settle(client, execution.wait(timeout=60)).result == "late"


def test_an_execution_is_followed_in_its_own_session(client_for):
    client = client_for(V2, fresh=True)
    execution = client.start_execution("import time\ntime.sleep(0.3)\n'first session'")
    first = client.session_id
    client.new_session()
    assert settle(client, execution.wait()).result == "first session"
    assert execution.session_id == first != client.session_id


def test_unknown_execution_is_a_clear_404(client_for):
    with pytest.raises(aca_kernel.ResourceNotFoundError) as info:
        client_for(V2).get_execution("no-such-execution")
    assert str(info.value).startswith("Execution 'no-such-execution' not found in session")


@pytest.mark.parametrize("api_version", [V2_202, V2])
def test_start_execution_names_it_with_an_operation_id(pool, api_version):
    # The id is ours, sent before any reply: even a reply lost on the way back leaves an id to ask about.
    rec = Recording()
    with aca_kernel.SessionsClient(pool.endpoint, pool.token, api_version=api_version,
                                   session_id=f"t-{uuid.uuid4()}", transport=rec) as client:
        execution = client.start_execution("'x'")
        execution.wait()
    start = rec.requests[0]
    assert start.method == "POST" and start.url.path.endswith("/executions")
    assert start.headers["operation-id"] == execution.id
    assert all(r.url.path.endswith(f"/executions/{execution.id}") for r in rec.requests[1:])


def test_async_client_execution_handle(pool):
    async def scenario() -> None:
        rec = AsyncRecording()
        async with aca_kernel.aio.SessionsClient(pool.endpoint, pool.token, api_version=V2,
                                                 session_id=f"t-{uuid.uuid4()}", transport=rec) as client:
            execution = await client.start_execution("```\nimport asyncio\n'aio'\n```", sanitize_input=True)
            assert isinstance(execution, aca_kernel.aio.Execution)
            result = await execution.wait()
            assert result.result == "aio" and execution.done
            fetched = await (await client.get_execution(execution.id)).refresh()
            assert fetched.result is not None and fetched.result.result == "aio"
            assert any(s.identifier == client.session_id for s in await client.list_sessions())
            assert (await client.get_pool_metadata()).jupyter_kernel is not None

    asyncio.run(scenario())


def test_list_sessions_follows_every_page(make_pool):
    # The service pages listSessions 300 at a time: 305 sessions take two pages.
    p = make_pool("--max-sessions", "400", "--ready", "0")
    rec = Recording()
    with aca_kernel.SessionsClient(p.endpoint, p.token, api_version=V2, transport=rec) as client:
        made = set()
        for _ in range(305):
            client.new_session()
            client.list_files()
            made.add(client.session_id)
        rec.requests.clear()
        listed = client.list_sessions()
    assert {s.identifier for s in listed} == made and len(listed) == 305
    pages = [r for r in rec.requests if r.url.path.endswith("/listSessions")]
    assert len(pages) == 2
    assert pages[1].url.params["skip"] == "300"
    assert "identifier" not in pages[0].url.params


def test_next_link_never_sends_the_token_elsewhere():
    seen: list[httpx.Request] = []

    def service(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        page = {"sessions": [{"identifier": f"s{len(seen)}"}],
                # A reply pointing at another host, and the same page again: followed by its skip only, once.
                "nextLink": "https://elsewhere.example/listSessions?api-version=x&skip=300"}
        return httpx.Response(200, json=page)

    client = aca_kernel.SessionsClient("https://pool.example/", "secret-token", api_version=V2,
                                       transport=httpx.MockTransport(service))
    with client:
        assert [s.identifier for s in client.list_sessions()] == ["s1", "s2"]
    assert [r.url.host for r in seen] == ["pool.example", "pool.example"]
    assert [r.url.params.get("skip") for r in seen] == [None, "300"]


def test_a_start_whose_reply_is_lost_is_not_resent_and_names_its_id(fake):
    client, service, sleeps = fake(httpx.ReadError("connection reset"), api_version=V2)
    with pytest.raises(aca_kernel.ServiceRequestError) as info:
        client.start_execution("launch()")
    sent = service.requests[0].headers["operation-id"]
    assert len(service.requests) == 1 and sleeps.delays == [] and info.value.may_have_executed
    assert "not re-sent" in str(info.value) and f"get_execution('{sent}')" in str(info.value)
    assert "\n" not in str(info.value)


def test_a_running_execution_is_polled_with_backoff(fake):
    def state(status: str, **extra: Any) -> httpx.Response:
        return httpx.Response(200, json={"id": "ex9", "identifier": "s", "executionType": "Asynchronous",
                                         "status": status, **extra})

    done = state("Succeeded", result={"stdout": "", "stderr": "", "executionResult": 7})
    client, service, sleeps = fake(state("NotStarted"), state("Running"), state("Running"), done, api_version=V2)
    execution = client.start_execution("7")
    assert (execution.id, execution.status, execution.result) == ("ex9", "running", None)
    assert settle(client, execution.wait()).result == 7
    assert [r.url.path for r in service.requests] == ["/sp/executions"] + ["/sp/executions/ex9"] * 3
    assert sleeps.delays == [0.25, 0.5, 1.0]
    assert service.requests[0].read() and b'"executionType":"Asynchronous"' in service.requests[0].content


def test_verify_takes_a_ca_bundle_path_and_refuses_a_missing_one(tmp_path):
    with pytest.raises(aca_kernel.InvalidArgumentError, match="no CA bundle there"):
        aca_kernel.SessionsClient("https://pool.example/", "t", verify=tmp_path / "missing.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(aca_kernel.InvalidArgumentError, match="not a readable PEM CA bundle"):
        aca_kernel.SessionsClient("https://pool.example/", "t", verify=str(garbage))
