"""Folders: %aca_upload -r / %aca_download -r / %aca_sync in a real shell, and `aca-sessions files put/get -r`,
on every api version of the local pool (nested paths, unicode names, excludes)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from .conftest import V1, V2, client_of, reload_extension

# 2024-10-02-preview has folders but no recursive listing: trees are walked folder by folder.
VERSIONS = [V1, "2024-10-02-preview", V2]


def make_tree(root: Path) -> dict[str, bytes]:
    files = {"a.txt": b"top", "sub/b é.txt": "ünïcødé".encode(), "sub/deep/c.bin": bytes(range(256)) * 40,
             "数据/表.csv": b"x,y\n1,2\n", "empty.txt": b""}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref")  # left out by default
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "m.pyc").write_bytes(b"\0")
    return files


def tree_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def run(shell, line: str):
    with capture_output() as cap:
        result = shell.run_cell(line)
    if result.error_in_exec is not None:
        raise result.error_in_exec
    return cap.stdout


@pytest.mark.parametrize("version", VERSIONS)
def test_upload_and_download_a_tree(shell, monkeypatch, tmp_path: Path, version: str) -> None:
    reload_extension(shell, monkeypatch, ACA_API_VERSION=version)
    files = make_tree(tmp_path / "proj")
    out = run(shell, "%aca_upload -r proj")
    assert "Uploaded 5 of 5 files" in out and "/mnt/data/proj" in out
    client = client_of(shell)
    assert client.download_file("proj/数据/表.csv") == b"x,y\n1,2\n"
    assert [f.name for f in shell.run_line_magic("aca_ls", "proj/sub")] == ["deep", "b é.txt"]
    run(shell, "%aca_download -r proj back")
    assert tree_of(tmp_path / "back") == files  # nested paths and names kept; .git and __pycache__ stayed home
    run(shell, "%aca_download -r /mnt/data/proj/sub into/")  # a trailing / means "into that folder"
    assert tree_of(tmp_path / "into" / "sub") == {"b é.txt": files["sub/b é.txt"],
                                                  "deep/c.bin": files["sub/deep/c.bin"]}
    run(shell, '%aca_upload -r proj "other name" --exclude "*.bin"')
    assert sorted(client.download_file(f"other name/{rel}") for rel in ("a.txt", "empty.txt")) == [b"", b"top"]
    with pytest.raises(Exception, match=r"(?i)not found|No folder"):
        run(shell, "%aca_download -r no-such-folder")


def test_folder_mistakes_are_usage_errors(shell, tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("x")
    cases = {("aca_upload", "-r missing"): "does not exist", ("aca_upload", "-r f.txt"): "is not a folder",
             ("aca_download", "-r /mnt/data"): "Name a local folder", ("aca_sync", "missing"): "does not exist",
             ("aca_sync", "f.txt"): "is not a folder"}
    for (magic, line), text in cases.items():
        with pytest.raises(UsageError, match=text):
            shell.run_line_magic(magic, line)


@pytest.mark.parametrize("version", VERSIONS)
def test_sync_sends_only_what_changed(shell, monkeypatch, tmp_path: Path, version: str) -> None:
    """200 small files; one changes: one is sent. An unchanged re-sync sends nothing."""
    reload_extension(shell, monkeypatch, ACA_API_VERSION=version)
    proj = tmp_path / "project"
    for i in range(200):
        path = proj / f"pkg{i % 5}" / f"módulo_{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"VALUE = {i}\n")
    assert "sent 200 files" in run(shell, "%aca_sync project")
    out = run(shell, "%aca_sync project")
    assert "sent 0 files (0 B), skipped 200 unchanged" in out
    (proj / "pkg3" / "módulo_8.py").write_text("VALUE = 'changed'\n")  # same directory, new content
    (proj / "pkg0" / "módulo_0.py").write_text("VALUE = 99\n")  # same size (11 bytes): only the hash differs
    out = run(shell, "%aca_sync project")
    assert "sent 2 files" in out and "skipped 198 unchanged" in out, out
    client = client_of(shell)
    assert client.download_file("project/pkg0/módulo_0.py") == b"VALUE = 99\n"
    assert "Would sync" in run(shell, "%aca_sync project -n") and "nothing to do" in run(shell, "%aca_sync -n project")


@pytest.mark.parametrize("version", VERSIONS)
def test_sync_delete_and_down(shell, monkeypatch, tmp_path: Path, version: str) -> None:
    reload_extension(shell, monkeypatch, ACA_API_VERSION=version)
    make_tree(tmp_path / "proj")
    run(shell, "%aca_sync proj")
    client = client_of(shell)
    client.upload_file(b"made remotely", "proj/results/out.txt")
    (tmp_path / "proj" / "a.txt").unlink()
    out = run(shell, "%aca_sync proj")  # nothing is deleted without --delete
    assert "sent 0 files" in out and "deleted" not in out
    assert client.download_file("proj/a.txt") == b"top"
    out = run(shell, "%aca_sync proj --delete")
    assert "deleted 2" in out  # a.txt (gone here) and results/out.txt (not here)
    with pytest.raises(Exception, match="not found"):
        client.download_file("proj/a.txt")
    client.upload_file(b"made remotely", "proj/results/out.txt")
    out = run(shell, "%aca_sync proj --down")
    assert "received 1 file" in out and "skipped 4 unchanged" in out
    assert (tmp_path / "proj" / "results" / "out.txt").read_bytes() == b"made remotely"
    assert (tmp_path / "proj" / ".git" / "HEAD").exists()  # excluded: never touched
    client.delete_file("proj/sub/b é.txt")
    out = run(shell, "%aca_sync proj --down --delete")
    assert "deleted 1" in out and not (tmp_path / "proj" / "sub" / "b é.txt").exists()
    assert (tmp_path / "proj" / ".git" / "HEAD").exists()
    run(shell, "%aca_sync fresh_copy proj --down")  # into a folder that did not exist
    assert tree_of(tmp_path / "fresh_copy") == {k: v for k, v in tree_of(tmp_path / "proj").items()
                                                if not k.startswith((".git", "__pycache__"))}


def _cli(pool, tmp_path: Path, session: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ACA_POOL_MANAGEMENT_ENDPOINT=pool.endpoint, ACA_SESSION_ID=session,
               ACA_TOKEN=pool.token or "", ACA_LOCAL_POOL_DIR=str(tmp_path / "no-local-pool"))
    return subprocess.run([sys.executable, "-m", "aca_kernel", "files", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=180)


@pytest.mark.parametrize("version", [V1, V2])
def test_cli_put_and_get_a_tree(pool, tmp_path: Path, version: str) -> None:
    files = make_tree(tmp_path / "proj")
    session = f"cli-tree-{uuid.uuid4().hex[:10]}"
    proc = _cli(pool, tmp_path, session, "put", "-r", "proj", "code/", "--api-version", version, "-q")
    assert proc.returncode == 0, proc.stderr
    assert "uploaded 5 of 5 file(s)" in proc.stderr and "/mnt/data/code/proj" in proc.stderr
    proc = _cli(pool, tmp_path, session, "get", "-r", "/mnt/data/code/proj", "copy", "--api-version", version)
    assert proc.returncode == 0, proc.stderr
    assert tree_of(tmp_path / "copy") == files
    proc = _cli(pool, tmp_path, session, "put", "proj", "--api-version", version)
    assert proc.returncode != 0 and "add -r" in proc.stderr
    proc = _cli(pool, tmp_path, session, "get", "-r", "nothing-here", "--api-version", version)
    assert proc.returncode == 3 and "aca-sessions: error:" in proc.stderr and "Traceback" not in proc.stderr
