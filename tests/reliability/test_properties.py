"""Property-based tests (hypothesis): identifiers, file names and paths, multipart bodies, the rich envelope.

The pure properties run hundreds of examples; those that talk to the shared pool are bounded (a few dozen
requests each) so the suite stays quick. Whatever is generated, the pool answers with the service's JSON
error or the right result, never a 5xx, and a name that is stored reads back byte for byte.
"""

from __future__ import annotations

import json
import os
import posixpath
import string
import types
import uuid
from functools import cache
from urllib.parse import quote

import pytest
from _pool_http import V1, V2502, V2510, connect, q, v2_execute
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from aca_kernel import InvalidArgumentError
from aca_kernel._validation import split_remote_name, validate_session_id
from aca_kernel.emulator import errors
from aca_kernel.emulator.files import normalize_name
from aca_kernel.emulator.routes import IDENTIFIER_RE
from aca_kernel.emulator.tree import disk_name, display_name
from aca_kernel.notebook import _runtime

pytestmark = pytest.mark.emulator_only

PURE = settings(max_examples=400, deadline=None, database=None)
# against the real pool: bounded, and the session-scoped pool fixture is shared on purpose
LIVE = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

IDENT_ALPHABET = string.ascii_letters + string.digits + "-_|{}[]:\";'<>?/.,@#$%^&*()+=!~`"
identifiers = st.text(IDENT_ALPHABET, min_size=1, max_size=256)
# names that exercise separators, dots, escapes, spaces, Unicode (including astral) and control characters
name_chars = st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")
names = st.text(st.one_of(st.sampled_from(list("/.%# ?&+\\\n\t~")), name_chars), min_size=1, max_size=80)


def _service_error(r) -> bool:
    body = r.json()
    return set(body) == {"error"} and {"code", "message"} <= set(body["error"])


# -- identifiers -----------------------------------------------------------------------------------------

@PURE
@given(st.text(max_size=300))
def test_the_clients_identifiers_are_all_accepted_by_the_pool(text):
    try:
        validate_session_id(text)
    except InvalidArgumentError as exc:
        assert "Invalid session identifier" in str(exc) and "\n" not in str(exc)
        return
    assert IDENTIFIER_RE.match(text)


@LIVE
@given(identifiers)
def test_any_identifier_of_the_rule_makes_a_session_that_keeps_its_name(pool, ident):
    with connect(pool) as http:
        r = http.get("session", params=q(ident, V2502))
        assert r.status_code == 200, r.text
        assert r.json()["identifier"] == ident


@LIVE
@given(st.text(max_size=300))
def test_any_identifier_at_all_is_a_session_or_a_400(pool, ident):
    with connect(pool) as http:
        r = http.get("files", params=q(ident, V2510))
        if ident and IDENTIFIER_RE.match(ident):
            assert r.status_code == 200, r.text
        else:
            assert r.status_code == 400 and _service_error(r), r.text
            assert r.json()["error"]["target"] in ("identifier", "api-version")


# -- file names and paths ----------------------------------------------------------------------------------

@PURE
@given(names, st.one_of(st.none(), names))
def test_a_normalised_name_never_leaves_mnt_data(name, path):
    try:
        rel = normalize_name(name, path)
    except errors.SessionRequestValidationFailed as exc:
        assert exc.target in ("filename", "path") and "\n" not in exc.message.replace(name, "").replace(
            path or "", "")
        return
    assert not rel.startswith("/")
    if rel:
        assert not {"", ".", ".."} & set(rel.split("/"))
    assert posixpath.normpath(posixpath.join("/mnt/data", rel)).startswith("/mnt/data")
    assert normalize_name(rel) == rel  # idempotent


@PURE
@given(names)
def test_the_client_and_the_pool_agree_on_names(name):
    """A name the client sends (split into directory and name) is one the pool stores, at the same place."""
    try:
        directory, base = split_remote_name(name)
    except InvalidArgumentError:
        return
    try:
        rel = normalize_name(base, directory or None)
    except errors.SessionRequestValidationFailed as exc:
        assert "255 bytes" in exc.message  # the disk's limit, which the client does not know
        return
    assert rel == (f"{directory}/{base}" if directory else base)


@PURE
@given(st.binary(min_size=1, max_size=120))
def test_every_name_on_disk_has_a_shown_form_that_leads_back_to_it(tmp_path_factory, raw):
    raw = raw.replace(b"/", b"_").replace(b"\0", b"_")
    assume(raw not in (b".", b".."))
    name = os.fsdecode(raw)
    shown = display_name(name)
    shown.encode("utf-8")  # always valid UTF-8, so always valid JSON
    d = tmp_path_factory.mktemp("names", numbered=True)
    (d / name).write_bytes(b"x")
    assert disk_name(str(d), shown) == name


@LIVE
@given(names, st.binary(max_size=2048))
def test_an_uploaded_name_is_refused_or_reads_back_the_same(pool, name, content):
    with connect(pool) as http:
        ident = str(uuid.uuid4())
        r = http.post("files", params=q(ident, V2510), files={"file": (name, content)})
        if r.status_code != 200:
            assert r.status_code == 400 and _service_error(r), r.text
            return
        stored = r.json()
        where = f"{stored['directory']}/{stored['name']}" if stored.get("directory") else stored["name"]
        got = http.get(f"files/{quote(where, safe='')}/content", params=q(ident, V2510))
        assert got.status_code == 200 and got.content == content
        listed = http.get("files", params=q(ident, V2510, recursive="true"))
        assert listed.status_code == 200
        assert any(f["name"] == stored["name"] for f in listed.json()["value"])
        assert http.delete(f"files/{quote(where, safe='')}", params=q(ident, V2510)).status_code == 204


@settings(max_examples=15, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.binary(min_size=1, max_size=60), min_size=1, max_size=4, unique=True))
def test_names_session_code_makes_can_be_listed_downloaded_and_deleted(pool, raws):
    raws = [r.replace(b"/", b"_").replace(b"\0", b"_") for r in raws]
    assume(all(r not in (b".", b"..") for r in raws) and len(set(raws)) == len(raws))
    with connect(pool) as http:
        ident = str(uuid.uuid4())
        code = "".join(f"open(b'/mnt/data/' + {r!r}, 'wb').write({r!r})\n" for r in raws)
        assert v2_execute(http, ident, code)["status"] == "Succeeded"
        listed = http.get("files", params=q(ident, V2510))
        assert listed.status_code == 200, listed.text
        shown = {f["name"] for f in listed.json()["value"]}
        assert shown == {display_name(os.fsdecode(r)) for r in raws}
        for raw in raws:
            name = quote(display_name(os.fsdecode(raw)), safe="")
            assert http.get(f"files/{name}/content", params=q(ident, V2510)).content == raw
            assert http.delete(f"files/{name}", params=q(ident, V2510)).status_code == 204
        assert http.get("files", params=q(ident, V2510)).json()["value"] == []


# -- multipart bodies --------------------------------------------------------------------------------------

boundaries = st.text(string.ascii_letters + string.digits + "'()+_,-./:=?", min_size=1, max_size=70)
header_values = st.text(st.characters(blacklist_characters="\r\n\x00", blacklist_categories=["Cs"]), max_size=40)


@st.composite
def multipart_bodies(draw):
    """A multipart body that may be well formed or broken anywhere: parts, headers, names, boundaries."""
    boundary = draw(boundaries)
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        field = draw(st.sampled_from(["file", "file", "files", "", "data"]))
        filename = draw(st.one_of(st.none(), names))
        disposition = f'form-data; name="{field}"' + (f'; filename="{filename}"' if filename is not None else "")
        headers = [("Content-Disposition", disposition)]
        if draw(st.booleans()):
            headers.append(("Content-Type", draw(header_values)))
        if draw(st.booleans()):
            headers.append((draw(st.text(string.ascii_letters + "-", min_size=1, max_size=20)), draw(header_values)))
        head = "".join(f"{k}: {v}\r\n" for k, v in headers).encode("utf-8", "surrogateescape")
        parts.append(b"--" + boundary.encode() + b"\r\n" + head + b"\r\n" + draw(st.binary(max_size=300)) + b"\r\n")
    body = draw(st.binary(max_size=20)) + b"".join(parts) + b"--" + boundary.encode() + b"--\r\n"
    mutation = draw(st.sampled_from(["none", "none", "truncate", "flip", "no-boundary"]))
    if mutation == "truncate" and body:
        body = body[: draw(st.integers(0, len(body) - 1))]
    elif mutation == "flip" and body:
        i = draw(st.integers(0, len(body) - 1))
        body = body[:i] + bytes([body[i] ^ draw(st.integers(1, 255))]) + body[i + 1:]
    content_type = draw(st.sampled_from([
        f"multipart/form-data; boundary={boundary}", f'multipart/form-data; boundary="{boundary}"',
        "application/json", "multipart/form-data", "text/plain"]))
    if mutation == "no-boundary":
        content_type = "multipart/form-data"
    return content_type, body


@LIVE
@given(multipart_bodies(), st.sampled_from([V1, V2510]))
def test_any_multipart_body_is_stored_or_refused_never_a_5xx(pool, case, version):
    content_type, body = case
    with connect(pool) as http:
        ident = str(uuid.uuid4())
        path = "files/upload" if version == V1 else "files"
        r = http.post(path, params=q(ident, version), content=body, headers={"Content-Type": content_type})
        assert r.status_code in (200, 400, 413), r.text
        if r.status_code != 200:
            assert _service_error(r), r.text
            assert http.get("files", params=q(ident, V1)).json()["value"] == []  # all or nothing
            return
        stored = r.json()["value"] if version == V1 else [{"properties": {"filename": _v2_path(r.json())}}]
        for item in stored:
            name = item["properties"]["filename"]
            assert http.get(f"files/content/{quote(name, safe='')}", params=q(ident, V1)).status_code == 200
    # nothing is left in the pool's staging folders
    if pool.data_dir is not None:
        assert not [f for f in (pool.data_dir / ".staging").rglob("up-*")]


def _v2_path(entry: dict) -> str:
    return f"{entry['directory']}/{entry['name']}" if entry.get("directory") else entry["name"]


# -- the rich envelope codec -------------------------------------------------------------------------------

@cache
def _session_side() -> types.ModuleType:
    """The session runtime's code as a session runs it (one namespace), for its Recorder and envelope."""
    module = types.ModuleType("session_runtime_under_test")
    exec(compile(_runtime._SOURCE, "<session runtime>", "exec"), module.__dict__)
    return module


# any text a cell can produce, lone surrogates (surrogateescape'd bytes) included
any_text = st.text(st.characters(blacklist_categories=()), max_size=60)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64) | st.floats(allow_nan=False) | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4), max_leaves=12)
mime_bundles = st.dictionaries(st.sampled_from(["text/plain", "text/html", "image/png", "application/json",
                                                "application/vnd.jupyter.widget-view+json"]) | any_text,
                               json_values, max_size=3)
records = st.one_of(
    st.fixed_dictionaries({"output_type": st.just("stream"), "name": st.sampled_from(["stdout", "stderr"]),
                           "text": any_text}),
    st.fixed_dictionaries({"output_type": st.just("display_data"), "data": mime_bundles,
                           "metadata": st.dictionaries(any_text, json_values, max_size=2)},
                          optional={"transient": st.fixed_dictionaries({"display_id": any_text})}),
    st.fixed_dictionaries({"output_type": st.just("execute_result"), "data": mime_bundles, "metadata": st.just({}),
                           "execution_count": st.integers(0, 10**6)}),
    st.fixed_dictionaries({"output_type": st.just("error"), "ename": any_text, "evalue": any_text,
                           "traceback": st.lists(any_text, max_size=3)}),
    st.fixed_dictionaries({"output_type": st.sampled_from(_runtime.COMM_KINDS), "comm_id": any_text,
                           "data": json_values}),
)
# the forms in which the service may hand the call's value back: as is, or quoted and escaped (repr, JSON)
quotings = st.sampled_from([lambda s: s, repr, json.dumps])


class _Failed:
    """A failed cell as IPython reports it to the runtime (``ExecutionResult``)."""

    success, error_before_exec, result = False, None, None

    def __init__(self, ename: str, evalue: str) -> None:
        self.error_in_exec = type(ename, (Exception,), {})(evalue)


@PURE
@given(st.lists(records, max_size=6), st.integers(0, 10**6), st.booleans(),
       st.one_of(st.none(), st.tuples(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True), any_text,
                                      st.lists(any_text, max_size=3))), quotings)
def test_an_envelope_reads_back_as_the_session_made_it(outputs, count, truncated, failure, quote_as):
    side = _session_side()
    rec = side.Recorder(10**9)
    for record in outputs:
        assert rec.add(record, 1)
    rec.truncated = truncated
    ip, result = None, None
    if failure is not None:
        ip, result = types.SimpleNamespace(_last_traceback=failure[2]), _Failed(failure[0], failure[1])
    text = side._finish(ip, rec, result, {"count": count}, None, returning=False)
    env = _runtime.parse_envelope(quote_as(text))
    assert env is not None
    assert env.outputs == outputs and env.count == count and env.truncated is truncated
    if failure is None:
        assert env.status == "ok" and env.error is None
    else:
        assert env.status == "error"
        assert env.error == {"ename": failure[0], "evalue": failure[1], "traceback": failure[2]}


def _envelope_text(outputs: list) -> str:
    side = _session_side()
    rec = side.Recorder(10**9)
    for record in outputs:
        rec.add(record, 1)
    return side._finish(None, rec, None, {"count": 1}, None, returning=False)


@st.composite
def garbled_values(draw):
    """Anything a broken or hostile service might return where the envelope belongs."""
    kind = draw(st.sampled_from(["text", "marked", "mutated", "deep", "expression", "other"]))
    if kind == "text":
        value = draw(any_text)
    elif kind == "marked":
        value = draw(st.sampled_from([_runtime.MARKER, _runtime.REPLY_MARKER, _runtime.MISSING, "@"])) \
            + draw(any_text)
    elif kind == "mutated":  # a real envelope cut, or with characters changed or inserted
        value = _envelope_text(draw(st.lists(records, max_size=3)))
        i = draw(st.integers(0, len(value)))
        value = draw(st.sampled_from([value[:i], value[:i] + draw(any_text) + value[i + 1:],
                                      value[:i] + draw(any_text) + value[i:]]))
    elif kind == "deep":  # nesting past any recursion limit, in JSON
        n = draw(st.sampled_from([5_000, 100_000]))
        value = _runtime.MARKER + draw(st.sampled_from(['{"v": 2, "outputs": ' + "[" * n, "[" * n + "]" * n,
                                                        '{"a":' * n + "1" + "}" * n]))
    elif kind == "expression":  # looks quoted, but is a Python expression (the service's repr is a literal)
        n = draw(st.sampled_from([10, 1_000, 100_000]))
        value = draw(st.sampled_from(["'@' + " + "-" * n + "1 + '@'", "'@' + " + "(" * n + "1" + ")" * n + "+'@'",
                                      "'@' + '" + "\\N{" * 3 + "'", "'@'['@']'", "\"@\" if 1 else 'x'\""]))
    else:
        return draw(st.one_of(json_values, st.binary(max_size=20)))
    return draw(quotings)(value)


@PURE
@given(garbled_values())
def test_a_garbled_envelope_is_none_or_an_envelope_never_an_exception(value):
    env = _runtime.parse_envelope(value)
    assert env is None or isinstance(env, _runtime.Envelope)
    assert _runtime.parse_reply(value) is None or isinstance(_runtime.parse_reply(value), dict)
    _runtime.is_missing(value)
