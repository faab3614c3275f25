"""%aca_upload / %aca_download / %aca_rm / %aca_ls / %aca_files in a real InteractiveShell on the local pool."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from .conftest import V2, FlattensFolders, client_of, reload_extension


def test_upload_ls_download_rm_round_trip(shell, tmp_path: Path) -> None:
    src = tmp_path / "in" / "data.csv"
    src.parent.mkdir()
    src.write_bytes(b"a,b\n1,2\n")
    with capture_output() as cap:
        shell.run_line_magic("aca_upload", str(src))
    assert "Uploaded" in cap.stdout and "/mnt/data/data.csv" in cap.stdout
    assert "upload data.csv" in cap.stderr  # plain progress lines outside a widget front end
    listing = shell.run_line_magic("aca_ls", "")
    assert [f.name for f in listing] == ["data.csv"] and "data.csv" in repr(listing) and "8 B" in repr(listing)
    assert "<td style='text-align:left'>data.csv</td>" in listing._repr_html_()
    with capture_output() as cap:
        shell.run_line_magic("aca_download", "/mnt/data/data.csv")
    assert (tmp_path / "data.csv").read_bytes() == b"a,b\n1,2\n"
    assert "Downloaded /mnt/data/data.csv (8 B)" in cap.stdout
    shell.run_line_magic("aca_download", "data.csv copy.csv")
    assert (tmp_path / "copy.csv").read_bytes() == b"a,b\n1,2\n"
    with capture_output() as cap:
        shell.run_line_magic("aca_rm", "data.csv")
    assert "Deleted /mnt/data/data.csv" in cap.stdout
    assert list(shell.run_line_magic("aca_ls", "")) == []
    assert "no files" in repr(shell.run_line_magic("aca_ls", ""))


def test_folders_on_v2(shell, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shell.run_line_magic("unload_ext", "aca_sessions")
    shell._aca_context = None
    monkeypatch.setenv("ACA_API_VERSION", V2)
    shell.run_line_magic("load_ext", "aca_sessions")
    (tmp_path / "x.txt").write_text("hello")
    with capture_output():
        shell.run_line_magic("aca_upload", "x.txt sub/")
        shell.run_line_magic("aca_upload", "x.txt sub/renamed.txt")
    assert [f.name for f in shell.run_line_magic("aca_ls", "")] == ["sub"]
    assert [f.name for f in shell.run_line_magic("aca_ls", "/mnt/data/sub")] == ["renamed.txt", "x.txt"]
    out = tmp_path / "out"
    out.mkdir()
    with capture_output():
        shell.run_line_magic("aca_download", f"sub/renamed.txt {out}")
        shell.run_line_magic("aca_rm", "sub/x.txt sub/renamed.txt")
    assert (out / "renamed.txt").read_text() == "hello"
    assert list(shell.run_line_magic("aca_ls", "sub")) == []


@pytest.mark.parametrize("line", ["x.txt sub/", "x.txt sub/renamed.txt", "-r folder"])
def test_an_upload_whose_folders_the_service_dropped_says_so(shell, tmp_path: Path, line: str) -> None:
    """Fault injection (FlattensFolders): every upload checks the name the service stored it under."""
    from aca_kernel.notebook._context import get_context

    get_context(shell).transport = FlattensFolders()
    (tmp_path / "x.txt").write_text("hello")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "x.txt").write_text("hello")
    with capture_output():
        shell.run_line_magic("aca_upload", "x.txt")  # nothing to drop: stored as sent
    with capture_output() as cap:
        result = shell.run_cell(f"%aca_upload {line}")
    exc = result.error_in_exec
    assert type(exc).__name__ == "NotSupportedError", cap.stdout + cap.stderr
    [shown] = exc._render_traceback_()
    assert "keeps no folders in file names" in shown and "2024-10-02-preview or later" in shown
    assert "Traceback" not in cap.stdout + cap.stderr


def test_user_mistakes_are_usage_errors(shell, tmp_path: Path) -> None:
    cases = {
        ("aca_upload", "missing.csv"): "does not exist",
        ("aca_upload", str(tmp_path)): "is a folder; add -r",
        ("aca_upload", ""): "arguments",
        ("aca_download", "../etc/passwd"): "leaves /mnt/data",
        ("aca_download", "x.csv nowhere/sub/"): "does not exist",
        ("aca_download", "x.csv nowhere/file.csv"): "does not exist",
        ("aca_ls", "../up"): "leaves /mnt/data",
        ("aca_rm", ""): "arguments",
    }
    for (magic, line), text in cases.items():
        with pytest.raises(UsageError, match=text):
            shell.run_line_magic(magic, line)


def test_download_refuses_a_name_escaping_the_folder(shell, tmp_path: Path) -> None:
    client_of(shell).upload_file(b"payload", "data.csv")
    (tmp_path / "data.csv").symlink_to(tmp_path.parent / f"outside-{os.getpid()}.csv")
    with pytest.raises(UsageError, match="escape"):
        shell.run_line_magic("aca_download", "data.csv")
    assert not (tmp_path.parent / f"outside-{os.getpid()}.csv").exists()


def test_upload_over_128_mb_is_a_usage_error(shell, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as fh:
        fh.truncate(128 * 1024 * 1024 + 1)
    with pytest.raises(UsageError, match="128 MB"):
        shell.run_line_magic("aca_upload", str(big))


def test_service_errors_are_one_line_and_fail_the_cell(shell, tmp_path: Path) -> None:
    with capture_output() as cap:
        result = shell.run_cell("%aca_download nope.txt")
    exc = result.error_in_exec
    assert type(exc).__name__ == "ResourceNotFoundError"
    lines = exc._render_traceback_()
    assert len(lines) == 1 and "nope.txt" in lines[0] and "ResourceNotFoundError" in lines[0]
    assert "Traceback" not in cap.stdout + cap.stderr and "_filemagics" not in cap.stdout + cap.stderr
    assert not (tmp_path / "nope.txt").exists() and not list(tmp_path.glob("*.part*"))


def test_auth_error_never_shows_the_token(shell, monkeypatch: pytest.MonkeyPatch) -> None:
    shell.run_line_magic("unload_ext", "aca_sessions")
    shell._aca_context = None
    monkeypatch.setenv("ACA_TOKEN", "bad-secret-token")
    shell.run_line_magic("load_ext", "aca_sessions")
    with capture_output() as cap:
        result = shell.run_cell("%aca_ls")
    assert type(result.error_in_exec).__name__ == "ClientAuthenticationError"
    assert "bad-secret-token" not in cap.stdout + cap.stderr + str(result.error_in_exec)


def test_named_sessions_are_separate(shell, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("A")
    with capture_output():
        shell.run_line_magic("aca_upload", "--session other a.txt")
    assert [f.name for f in shell.run_line_magic("aca_ls", "-s other")] == ["a.txt"]
    assert list(shell.run_line_magic("aca_ls", "")) == []
    assert client_of(shell, "other").session_id != client_of(shell).session_id


def test_aca_files_shows_the_browser(shell) -> None:
    from ipywidgets.widgets.widget import _instances, _remove_buffers

    from aca_kernel.notebook._context import get_context
    from aca_kernel.widgets import FileBrowser

    client_of(shell).upload_file(b"1", "shown.txt")
    assert get_context(shell).session().first_call is None
    before = set(_instances)
    with capture_output() as cap:
        shell.run_line_magic("aca_files", "")
    assert cap.outputs and "application/vnd.jupyter.widget-view+json" in cap.outputs[0].data
    model_id = cap.outputs[0].data["application/vnd.jupyter.widget-view+json"]["model_id"]
    fb = _instances[model_id]  # the registry behind the deprecated Widget.widgets
    assert isinstance(fb, FileBrowser)
    try:
        assert fb.wait()
        assert get_context(shell).session().first_call is not None  # the widget's listing counts as use
        assert [f.name for f in fb.files] == ["shown.txt"]
        assert client_of(shell).session_id in fb._title.value
        fb.select("shown.txt")
        assert fb.wait()
        # Every widget the magic made, serialized as the front end receives it: no token anywhere.
        states = "\n".join(json.dumps(_remove_buffers(w.get_state())[0], default=str)
                           for key, w in list(_instances.items()) if key not in before)
        assert client_of(shell).session_id in states and "shown.txt" in states
        assert os.environ["ACA_TOKEN"] not in states
    finally:
        fb.close()


def test_file_browser_without_a_client_uses_the_current_session(shell) -> None:
    from aca_kernel.widgets import FileBrowser

    client_of(shell).upload_file(b"1", "ctx.txt")
    fb = FileBrowser()
    try:
        assert fb.wait() and [f.name for f in fb.files] == ["ctx.txt"]
        assert fb.client is client_of(shell)
    finally:
        fb.close()


def test_arguments_are_split_as_a_shell_would(shell, tmp_path: Path) -> None:
    (tmp_path / "my file.csv").write_text("a,b")
    with capture_output() as cap:
        shell.run_cell('%aca_upload "my file.csv" \'with space/new name.csv\'')
    assert "/mnt/data/with space/new name.csv" in cap.stdout, cap.stdout + cap.stderr
    with capture_output():
        shell.run_line_magic("aca_download", '"with space/new name.csv" "copy of it.csv"')
        shell.run_line_magic("aca_rm", "'with space/new name.csv'")
    assert (tmp_path / "copy of it.csv").read_text() == "a,b"
    with pytest.raises(UsageError, match="close the quote"):
        shell.run_line_magic("aca_upload", '"unclosed.csv')


def test_listing_counts_items_in_good_english(shell) -> None:
    client_of(shell).upload_file(b"1", "one.txt")
    listing = shell.run_line_magic("aca_ls", "")
    assert "(1 item)" in repr(listing) and "(1 item)" in listing._repr_html_()
    client_of(shell).upload_file(b"2", "two.txt")
    listing = shell.run_line_magic("aca_ls", "")
    assert "(2 items)" in repr(listing) and "(2 items)" in listing._repr_html_()


def test_a_missing_file_is_said_once(shell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In Jupyter the refused download shows its one error line and no (failed) progress bar beside it."""
    from aca_kernel.notebook import _filemagics

    monkeypatch.setattr(_filemagics, "_in_widget_frontend", lambda _shell: True)
    with capture_output() as cap:
        result = shell.run_cell("%aca_download nope.txt")
    assert type(result.error_in_exec).__name__ == "ResourceNotFoundError"
    assert cap.outputs == []  # no progress widget displayed
    assert (cap.stdout + cap.stderr).count("not found") == 1  # the error line, once


@pytest.mark.parametrize("version", ["2024-02-02-preview", V2])
def test_rm_of_a_missing_file_gives_the_same_detail_as_download(shell, monkeypatch, version: str) -> None:
    reload_extension(shell, monkeypatch, ACA_API_VERSION=version)
    errors = {}
    for magic in ("aca_download", "aca_rm"):
        with capture_output():
            errors[magic] = str(shell.run_cell(f"%{magic} nope.txt").error_in_exec)
    assert "(404 FileNotFound)" in errors["aca_rm"] and "/mnt/data/nope.txt does not exist" in errors["aca_rm"]
    assert errors["aca_rm"].split("(404")[0] == errors["aca_download"].split("(404")[0]


def test_the_hidden_folder_of_aca_pip_never_shows(shell) -> None:
    client = client_of(shell)
    client.upload_file(b"w", ".aca-sessions/wheels/x-1.0-py3-none-any.whl")
    client.upload_file(b"{}", ".aca-live-x-1.json")  # a running cell's live output, outside .aca-sessions/
    client.upload_file(b"1", "mine.txt")
    assert [f.name for f in shell.run_line_magic("aca_ls", "")] == ["mine.txt"]
    from aca_kernel.widgets import FileBrowser

    fb = FileBrowser(client=client)
    try:
        assert fb.wait() and [f.name for f in fb.files] == ["mine.txt"]
    finally:
        fb.close()
