"""Files over real HTTP: isolation between sessions, names that try to leave /mnt/data, the 128 MB limit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _pool_http import V1, V2502, V2510, connect, emulator_only, error_code, new_id, q, v1_execute


@pytest.fixture
def http(pool):
    with connect(pool) as client:
        yield client


def test_sessions_cannot_see_each_others_files(http):
    a, b = new_id(), new_id()
    assert http.post("files", params=q(a, V2510), files={"file": ("private.txt", b"a's")}).status_code == 200
    assert http.get("files", params=q(b, V2510)).json()["value"] == []
    assert http.get("files/private.txt/content", params=q(b, V2510)).status_code == 404
    assert http.get("files/content/private.txt", params=q(b, V1)).status_code == 404
    # nor through code: b's /mnt/data does not hold a's file
    assert v1_execute(http, b, "import os; len(os.listdir('/mnt/data'))")["result"] == 0


def _files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()}


@emulator_only
@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/etc/evil.txt", "/mnt/data/../evil.txt",
                                  "/mnt/database/evil.txt"])
def test_upload_names_escaping_mnt_data_are_refused(pool, http, name):
    before = _files_under(pool.data_dir)
    r = http.post("files/upload", params=q(new_id(), V1), files={"file": (name, b"evil")})
    assert r.status_code == 400, r.text
    assert error_code(r) == "SessionRequestValidationFailed"
    assert _files_under(pool.data_dir) == before
    assert not Path("/etc/evil.txt").exists()


@emulator_only
def test_path_parameter_and_names_escaping_are_refused(http):
    ident = new_id()
    r = http.post("files", params=q(ident, V2510, path="../.."), files={"file": ("x.txt", b"x")})
    assert (r.status_code, error_code(r)) == (400, "SessionRequestValidationFailed")
    r = http.get("files", params=q(ident, V2510, path="/etc"))
    assert (r.status_code, error_code(r)) == (400, "SessionRequestValidationFailed")
    r = http.get("files/content/..%2F..%2F..%2Fetc%2Fpasswd", params=q(ident, V1))
    assert (r.status_code, error_code(r)) == (400, "SessionRequestValidationFailed")
    r = http.get("files/..%2Fsecret/content", params=q(ident, V2502))
    assert r.status_code == 400
    r = http.delete("files/..%2F..", params=q(ident, V2510))
    assert r.status_code == 400


@emulator_only
def test_symlinks_made_by_session_code_do_not_lead_out(pool, http):
    ident = new_id()
    http.post("files", params=q(ident, V2510), files={"file": ("mine.txt", b"ok")})
    props = v1_execute(http, ident, "import os\nos.symlink('/etc', '/mnt/data/etc-link')\n"
                                    "os.symlink('../..', '/mnt/data/up')\nos.symlink('mine.txt', '/mnt/data/alias')")
    assert props["status"] == "Success", props["stderr"]
    before = _files_under(pool.data_dir)
    r = http.get("files/content/etc-link/passwd", params=q(ident, V1))
    assert (r.status_code, error_code(r)) == (400, "SessionRequestValidationFailed")
    r = http.post("files", params=q(ident, V2510, path="up"), files={"file": ("planted.txt", b"x")})
    assert (r.status_code, error_code(r)) == (400, "SessionRequestValidationFailed")
    r = http.post("files/upload", params=q(ident, V1), files={"file": ("etc-link/planted.txt", b"x")})
    assert r.status_code == 400
    r = http.get("files", params=q(ident, V2510, path="up"))
    assert r.status_code == 400
    assert _files_under(pool.data_dir) == before
    # a link that stays inside /mnt/data is an ordinary name, and deleting a link removes only the link
    assert http.get("files/content/alias", params=q(ident, V1)).content == b"ok"
    assert http.delete("files/etc-link", params=q(ident, V2510)).status_code == 204
    assert Path("/etc/passwd").exists()


@emulator_only
def test_delete_directory_and_missing(http):
    ident = new_id()
    http.post("files", params=q(ident, V2510, path="d/e"), files={"file": ("f.txt", b"f")})
    assert http.get("files/d", params=q(ident, V2510)).json()["type"] == "directory"
    assert http.delete("files/d", params=q(ident, V2510)).status_code == 204
    assert http.get("files", params=q(ident, V2510)).json()["value"] == []
    r = http.delete("files/d", params=q(ident, V2510))
    assert (r.status_code, error_code(r)) == (404, "FileNotFound")


@emulator_only
def test_upload_needs_a_file_part(http):
    r = http.post("files/upload", params=q(new_id(), V1), data={"not": "a file"})
    assert (r.status_code, error_code(r)) == (400, "SessionRequestValidationFailed")
    r = http.post("files", params=q(new_id(), V2510), files={"upload": ("x.txt", b"x")})
    assert r.status_code == 400
    r = http.post("files", params=q(new_id(), V2510), content=b"plain bytes",
                  headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 400


@emulator_only
def test_an_oversized_part_header_is_refused(pool, http):
    # the part headers are buffered while parsing: python-multipart bounds their size and count
    ident = new_id()
    body = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.txt"\r\n'
            b"X-Filler: " + b"f" * (1 << 20) + b"\r\n\r\nx\r\n--b--\r\n")
    r = http.post("files", params=q(ident, V2510), content=body,
                  headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert (r.status_code, error_code(r)) == (400, "SessionRequestValidationFailed")
    assert http.get("files", params=q(ident, V2510)).json()["value"] == []


def _high_water_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@emulator_only
@pytest.mark.slow
def test_upload_over_128_mb_is_413_streamed_and_leaves_nothing(pool, http):
    ident = new_id()
    boundary = "zeroboundary4f1c"
    chunk = bytes(1024 * 1024)

    def body():
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n"
               "Content-Type: application/octet-stream\r\n\r\n").encode()
        for _ in range(129):
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    before_files = _files_under(pool.data_dir)
    before_hwm = _high_water_kb(pool.proc.pid)
    r = http.post("files/upload", params=q(ident, V1), content=body(),
                  headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413
    assert error_code(r) == "RequestEntityTooLarge"
    assert _files_under(pool.data_dir) == before_files
    assert http.get("files", params=q(ident, V1)).json()["value"] == []
    # streamed to disk: the pool's peak memory did not grow by anything near the file's size
    assert _high_water_kb(pool.proc.pid) - before_hwm < 48 * 1024
    assert not any(p.is_file() for p in (pool.data_dir / ".staging").rglob("*"))


@emulator_only
@pytest.mark.slow
def test_large_upload_and_download_stream_without_memory_growth(pool, http):
    ident = new_id()
    size = 100 * 1024 * 1024
    chunk = bytes(1024 * 1024)
    boundary = "bigboundary0c7d"

    def body():
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"up.bin\"\r\n"
               "Content-Type: application/octet-stream\r\n\r\n").encode()
        for _ in range(size // len(chunk)):
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    before_hwm = _high_water_kb(pool.proc.pid)
    r = http.post("files", params=q(ident, V2510), content=body(),
                  headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 200, r.text
    assert r.json()["sizeInBytes"] == size
    received = 0
    with http.stream("GET", "files/up.bin/content", params=q(ident, V2510)) as download:
        assert download.status_code == 200
        for part in download.iter_bytes():
            assert not part.strip(b"\0")
            received += len(part)
    assert received == size
    assert _high_water_kb(pool.proc.pid) - before_hwm < 48 * 1024


def test_an_upload_does_not_follow_a_symlink_swapped_in_after_the_name_check(tmp_path, monkeypatch):
    # Session code can replace a checked directory with a link out of /mnt/data between the check and the
    # rename: the write must not follow it.
    from aca_kernel.emulator import errors
    from aca_kernel.emulator.files import SessionFiles

    root, outside, staging = tmp_path / "root", tmp_path / "outside", tmp_path / "staging"
    for d in (root, outside, staging):
        d.mkdir()
    files = SessionFiles(root, staging)
    upload = files.open_upload("d/x.txt")  # d does not exist yet: the name check passes
    upload.write(b"evil")
    (root / "d").symlink_to(outside)  # ... and now d leads out
    monkeypatch.setattr(SessionFiles, "_resolve", lambda self, rel: os.path.join(self._real_root(), rel))
    with pytest.raises(errors.SessionRequestValidationFailed):
        upload.commit()
    assert list(outside.iterdir()) == []
    assert list(staging.iterdir()) == []


@pytest.mark.parametrize(("action", "names"), [("open_download", ["d/secret.txt", "d/victim"]),
                                              ("delete", ["d/secret.txt", "d/victim"]),
                                              ("listdir", ["d/victim", "d"]),
                                              ("stat", ["d/secret.txt", "d/victim"])])
def test_reads_and_deletes_do_not_follow_a_symlink_swapped_in_after_the_name_check(tmp_path, monkeypatch, action,
                                                                                  names):
    from aca_kernel.emulator import errors
    from aca_kernel.emulator.files import SessionFiles

    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    (outside / "victim").mkdir(parents=True)
    (outside / "secret.txt").write_bytes(b"host secret")
    (root / "d").symlink_to(outside)
    files = SessionFiles(root, tmp_path)
    # as if the name had been checked while d was still a directory
    monkeypatch.setattr(SessionFiles, "_resolve",
                        lambda self, rel, follow_last=True: os.path.join(self._real_root(), rel))
    for name in names:
        with pytest.raises(errors.SessionRequestValidationFailed, match="leads outside"):
            getattr(files, action)(name)
    assert (outside / "secret.txt").read_bytes() == b"host secret" and (outside / "victim").is_dir()
