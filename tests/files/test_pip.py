"""%aca_pip on the local pool, whose sandboxed sessions have no network: wheels are resolved and downloaded here
(pip reaches the package index from this machine), uploaded, and installed in the session.

Packages: humanize (pure Python) and mmh3 (compiled wheels), neither in the sessions' environment; docopt
(source distribution only); two contradicting pins of humanize for a conflict.
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
import zipfile
from pathlib import Path

import pytest
from IPython.utils.capture import capture_output

from .conftest import client_of

PURE, COMPILED = "humanize", "mmh3"


@pytest.fixture(scope="module")
def wheel_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wheel-cache")


@pytest.fixture
def pip_shell(shell, wheel_cache: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ACA_PIP_CACHE", str(wheel_cache))
    return shell


@pytest.fixture
def pip_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The pip commands run on the kernel's side (still run for real)."""
    from aca_kernel.notebook import _pip

    calls: list[list[str]] = []
    real = _pip._pip

    def recording(args: list[str]):
        calls.append(list(args))
        return real(args)

    monkeypatch.setattr(_pip, "_pip", recording)
    return calls


def cell(shell, code: str):
    with capture_output() as cap:
        result = shell.run_cell(code)
    return result, cap


def report_of(cap) -> str:
    return "\n".join(o.data.get("text/plain", "") for o in cap.outputs)


def remote_value(shell, code: str) -> str:
    result, cap = cell(shell, f"%aca {code}")
    assert result.error_in_exec is None, cap.stdout + cap.stderr
    return cap.stdout.strip()


def test_install_pure_and_compiled_then_import(pip_shell, pip_calls) -> None:
    result, cap = cell(pip_shell, f"%aca_pip install {PURE} {COMPILED}")
    assert result.error_in_exec is None, cap.stdout + cap.stderr
    table = report_of(cap)
    assert "Package" in table and "Status" in table
    for name in (PURE, COMPILED):
        assert any(line.startswith(name) and "installed" in line for line in table.splitlines()), table
    assert "manylinux" in cap.stdout or "linux" in cap.stdout  # the session's tags were used
    assert remote_value(pip_shell, f"import {PURE}; print({PURE}.naturalsize(3000000))") == "3.0 MB"
    assert remote_value(pip_shell, f"import {COMPILED}; print(type({COMPILED}.hash('x')).__name__)") == "int"
    assert [c[0] for c in pip_calls] == ["install", "download"]  # resolved, then downloaded (no deps to skip)
    dry_run = pip_calls[0]
    assert "--dry-run" in dry_run and "--only-binary=:all:" in dry_run and "--platform" in dry_run
    assert "--python-version" in dry_run and "--implementation" in dry_run
    # The wheels went through the hidden folder and were removed after the install; nothing shows.
    assert list(pip_shell.run_line_magic("aca_ls", "")) == []
    # The same set again: the session has it, nothing is resolved, uploaded or downloaded.
    pip_calls.clear()
    result, cap = cell(pip_shell, f"%aca_pip install {PURE} {COMPILED}")
    assert result.error_in_exec is None
    assert report_of(cap).count("already satisfied") == 2
    assert pip_calls == []


def make_wheel(folder: Path, name: str, version: str) -> Path:
    """A minimal pure-Python wheel of ``name`` whose module holds ``VERSION``."""
    module, dist = name.replace("-", "_"), f"{name.replace('-', '_')}-{version}"
    files = {f"{module}/__init__.py": f"VERSION = {version!r}\n",
             f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}

    def digest(text: str) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()

    record = "".join(f"{path},sha256={digest(text)},{len(text.encode())}\n" for path, text in files.items())
    record += f"{dist}.dist-info/RECORD,,\n"
    wheel = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in {**files, f"{dist}.dist-info/RECORD": record}.items():
            zf.writestr(path, text)
    return wheel


@pytest.fixture
def probe_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A package ``aca-probe`` in versions 1.0 and 2.0, on a find-links folder that pip here also reads."""
    links = tmp_path / "links"
    links.mkdir()
    for version in ("1.0", "2.0"):
        make_wheel(links, "aca-probe", version)
    monkeypatch.setenv("PIP_FIND_LINKS", f"{os.environ.get('PIP_FIND_LINKS', '')} {links}".strip())
    return "aca-probe"


def test_what_the_session_has_at_a_satisfying_version_is_kept(pip_shell, pip_calls, probe_index, tmp_path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from aca_kernel.notebook import _pip

    uploaded: list[str] = []
    real_upload = _pip._upload_wheels
    monkeypatch.setattr(_pip, "_upload_wheels", lambda shell, state, wheels: (
        uploaded.extend(w.filename for w in wheels), real_upload(shell, state, wheels))[-1])

    def session_version() -> str:
        return remote_value(pip_shell, "import importlib.metadata as m; print(m.version('aca-probe'))")

    result, cap = cell(pip_shell, "%aca_pip install aca-probe==1.0")
    assert result.error_in_exec is None, cap.stdout + cap.stderr
    assert uploaded == ["aca_probe-1.0-py3-none-any.whl"] and session_version() == "1.0"
    # The session has 1.0, which satisfies these: nothing is resolved, downloaded or uploaded (pip: "Requirement
    # already satisfied"), although the index has 2.0.
    (tmp_path / "satisfied.txt").write_text("aca-probe>=1,<3  # kept\n")
    for request in ("aca-probe", "'aca-probe>=0.5'", "-r satisfied.txt"):
        pip_calls.clear()
        uploaded.clear()
        result, cap = cell(pip_shell, f"%aca_pip install {request}")
        assert result.error_in_exec is None, cap.stdout + cap.stderr
        table = report_of(cap)
        assert any(ln.startswith("aca-probe") and "1.0" in ln and "already satisfied" in ln
                   for ln in table.splitlines()), table
        assert "Nothing to install" in table and pip_calls == [] and uploaded == []
    assert session_version() == "1.0"
    # What 1.0 does not satisfy is resolved as before: named on the command line, or in a requirements file (whose
    # pin used to stay, a conflict), or refused when no version matches.
    (tmp_path / "newer.txt").write_text("aca-probe>=2\n")
    result, cap = cell(pip_shell, "%aca_pip install -r newer.txt")
    assert result.error_in_exec is None, cap.stdout + cap.stderr
    assert "upgraded from 1.0" in report_of(cap) and uploaded == ["aca_probe-2.0-py3-none-any.whl"]
    assert session_version() == "2.0"
    result, cap = cell(pip_shell, "%aca_pip install aca-probe==1.0")
    assert result.error_in_exec is None and "downgraded from 2.0" in report_of(cap)
    result, cap = cell(pip_shell, "%aca_pip install 'aca-probe>=3'")
    assert result.error_in_exec is not None and "aca-probe>=3" in str(result.error_in_exec)
    # -U releases the session's version like pip's --upgrade.
    pip_calls.clear()
    result, cap = cell(pip_shell, "%aca_pip install -U aca-probe")
    assert result.error_in_exec is None, cap.stdout + cap.stderr
    assert "upgraded from 1.0" in report_of(cap) and pip_calls[0][0] == "install"
    assert session_version() == "2.0"


def test_a_new_session_is_served_from_the_cache_and_replay_reinstalls(pip_shell, pip_calls) -> None:
    from aca_kernel.notebook._context import get_context

    result, cap = cell(pip_shell, f"%aca_pip install {PURE}")
    assert result.error_in_exec is None, cap.stdout + cap.stderr
    state = get_context(pip_shell).session()
    assert [r.name for r in state.packages] == [PURE]
    # The session is recycled (a fresh identifier: nothing installed there any more).
    state.client.new_session(f"recycled-{uuid.uuid4().hex[:8]}")
    result, _ = cell(pip_shell, f"%aca import {PURE}")
    assert type(result.error_in_exec).__name__ == "ModuleNotFoundError"
    pip_calls.clear()
    # %aca_replay (its plan, then --yes) installs it again, before it re-runs any cell
    _, cap = cell(pip_shell, "%aca_replay")
    assert "reinstall 1 package(s) installed with %aca_pip" in cap.stdout
    result, cap = cell(pip_shell, "%aca_replay --yes")
    assert result.error_in_exec is None, cap.stdout + cap.stderr
    assert any(ln.startswith(PURE) and "from the cache" in ln for ln in report_of(cap).splitlines()), report_of(cap)
    assert pip_calls == []  # no resolution, no download: the recorded wheel came from the cache
    assert remote_value(pip_shell, f"import {PURE}; print({PURE}.intcomma(1234567))") == "1,234,567"
    # A second install in yet another session: resolved again, but the wheel is not downloaded again.
    state.client.new_session(f"third-{uuid.uuid4().hex[:8]}")
    pip_calls.clear()
    result, cap = cell(pip_shell, f"%aca_pip install {PURE}")
    assert result.error_in_exec is None and "from the cache" in report_of(cap)
    assert [c[0] for c in pip_calls] == ["install"]


def test_failures_are_one_clear_line(pip_shell, monkeypatch: pytest.MonkeyPatch) -> None:
    def failure(code: str) -> str:
        result, cap = cell(pip_shell, code)
        exc = result.error_in_exec
        assert exc is not None, cap.stdout
        lines = exc._render_traceback_()
        assert len(lines) == 1 and "Traceback" not in cap.stdout + cap.stderr
        return str(exc)

    text = failure("%aca_pip install docopt")
    assert "docopt: no wheel for the session's platform" in text and "cp3" in text and "py3-none-any" in text
    text = failure(f'%aca_pip install "{PURE}==4.17.0" "{PURE}<4"')
    assert text.startswith("Conflict:") and f"{PURE}<4" in text and f"{PURE}==4.17.0" in text
    text = failure("%aca_pip install no-such-package-aca-sessions-test")
    assert "not found on the package index" in text
    text = failure(f"%aca_pip --remote install {PURE}")
    assert "no outbound network" in text and "without --remote" in text
    from aca_kernel.notebook import _pip

    monkeypatch.setattr(_pip, "MAX_UPLOAD_BYTES", 1000)
    text = failure(f"%aca_pip install {PURE}")
    assert "at most 128 MB per file" in text and "--remote" in text
    monkeypatch.undo()
    client_of(pip_shell).execute("import sys; sys.modules['pip'] = None")  # an interpreter without pip
    text = failure(f"%aca_pip install {PURE}")
    assert "has no pip" in text
    client_of(pip_shell).execute("import sys; del sys.modules['pip']")


def test_requirements_file_and_usage(pip_shell, tmp_path: Path) -> None:
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="Nothing to install"):
        pip_shell.run_line_magic("aca_pip", "install")
    with pytest.raises(UsageError, match="No requirements file"):
        pip_shell.run_line_magic("aca_pip", "install -r missing.txt")
    (tmp_path / "requirements.txt").write_text(f"# for the session\n{PURE}\n")
    result, cap = cell(pip_shell, "%aca_pip install -r requirements.txt")
    assert result.error_in_exec is None, cap.stdout + cap.stderr
    assert PURE in report_of(cap)
    _, cap = cell(pip_shell, "%aca_pip list")
    assert PURE in report_of(cap)
