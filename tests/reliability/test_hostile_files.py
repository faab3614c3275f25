"""What session code can do to /mnt/data (very deep trees, names that are not UTF-8, a full disk) and names a
client can send: every answer is the right error or the right result, never a 500, and nothing stays on disk.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from _pool_http import V1, V2410, V2510, connect, error_code, q, v1_execute, v2_execute
from conftest import start_pool, wait_until

pytestmark = pytest.mark.emulator_only

DEPTH = 1200  # deeper than Python's recursion limit (1000)
MAKE_DEEP = (f"import os\nos.chdir('/mnt/data')\nos.mkdir('deep')\nos.chdir('deep')\n"
             f"for i in range({DEPTH}):\n    os.mkdir('d')\n    os.chdir('d')\n"
             "open('leaf.txt', 'w').write('bottom')\nos.chdir('/mnt/data')\n")


def _session_dirs(p) -> list[str]:
    return sorted(os.listdir(p.data_dir / "sessions")) if (p.data_dir / "sessions").exists() else []


def test_a_tree_deeper_than_python_recursion_lists_deletes_and_goes_away(make_pool):
    p = make_pool("--ready", "0")
    with connect(p) as http:
        ident = str(uuid.uuid4())
        assert v2_execute(http, ident, MAKE_DEEP)["status"] == "Succeeded"
        v1 = http.get("files", params=q(ident, V1))
        assert v1.status_code == 200, v1.text
        (leaf,) = [f["properties"]["filename"] for f in v1.json()["value"]]
        assert leaf == "deep/" + "d/" * DEPTH + "leaf.txt"
        tree = http.get("files", params=q(ident, V2510, recursive="true", path="deep"))
        assert tree.status_code == 200, tree.text
        assert len(tree.json()["value"]) == DEPTH + 1
        r = http.get(f"files/{quote(leaf, safe='')}/content", params=q(ident, V2510))
        assert r.status_code == 200 and r.content == b"bottom"
        assert http.delete("files/deep", params=q(ident, V2510)).status_code == 204
        assert http.get("files", params=q(ident, V2510)).json()["value"] == []
        # once more, and this time the session goes with its tree
        assert v2_execute(http, ident, MAKE_DEEP)["status"] == "Succeeded"
        assert http.delete("session", params=q(ident, V2510)).status_code == 204
    assert _session_dirs(p) == []


def test_an_expired_session_with_a_deep_tree_leaves_nothing_on_disk(make_pool):
    p = make_pool("--ready", "0", "--cooldown", "2")
    with connect(p) as http:
        assert v2_execute(http, str(uuid.uuid4()), MAKE_DEEP)["status"] == "Succeeded"
    assert wait_until(lambda: _session_dirs(p) == [], timeout=60)
    assert not any("RecursionError" in line for line in p.output)


def test_a_name_that_is_not_utf8_is_listed_escaped_downloaded_and_deleted(pool):
    with connect(pool) as http:
        ident = str(uuid.uuid4())
        code = ("open(b'/mnt/data/caf\\xe9 100%.txt', 'wb').write(b'latin-1 name')\n"
                "import os; os.mkdir(b'/mnt/data/dir\\xff'); open(b'/mnt/data/dir\\xff/in.txt', 'w').write('x')\n"
                "open('/mnt/data/plain.txt', 'w').write('plain')")
        assert v2_execute(http, ident, code)["status"] == "Succeeded"
        listed = http.get("files", params=q(ident, V2510))
        assert listed.status_code == 200, listed.text
        assert [f["name"] for f in listed.json()["value"]] == ["caf%E9 100%25.txt", "dir%FF", "plain.txt"]
        v1 = http.get("files", params=q(ident, V1))
        assert sorted(f["properties"]["filename"] for f in v1.json()["value"]) == [
            "caf%E9 100%25.txt", "dir%FF/in.txt", "plain.txt"]
        name = quote("caf%E9 100%25.txt", safe="")
        assert http.get(f"files/{name}/content", params=q(ident, V2510)).content == b"latin-1 name"
        assert http.get(f"files/content/{name}", params=q(ident, V1)).content == b"latin-1 name"
        assert http.get(f"files/{name}", params=q(ident, V2510)).json()["sizeInBytes"] == 12
        inner = http.get("files", params=q(ident, V2510, path="dir%FF"))
        assert [f["name"] for f in inner.json()["value"]] == ["in.txt"]
        assert http.delete(f"files/{name}", params=q(ident, V2510)).status_code == 204
        assert http.delete("files/dir%25FF", params=q(ident, V2510)).status_code == 204
        assert [f["name"] for f in http.get("files", params=q(ident, V2510)).json()["value"]] == ["plain.txt"]
        # a real file whose name looks like an escape is its own file
        http.post("files", params=q(ident, V2510), files={"file": ("caf%E9.txt", b"literal")})
        assert http.get(f"files/{quote('caf%E9.txt', safe='')}/content",
                        params=q(ident, V2510)).content == b"literal"


def test_names_too_long_for_the_disk_are_a_400(pool):
    with connect(pool) as http:
        ident = str(uuid.uuid4())
        long = "n" * 300
        for r in (http.post("files", params=q(ident, V2510), files={"file": (long, b"x")}),
                  http.get(f"files/{long}", params=q(ident, V2510)),
                  http.get(f"files/{long}/content", params=q(ident, V2510)),
                  http.delete(f"files/{long}", params=q(ident, V2510)),
                  http.get("files", params=q(ident, V2510, path=long))):
            assert r.status_code == 400, r.text
            assert error_code(r) == "SessionRequestValidationFailed" and "255 bytes" in r.json()["error"]["message"]


def test_downloading_a_directory_is_a_400(pool):
    with connect(pool) as http:
        ident = str(uuid.uuid4())
        assert v1_execute(http, ident, "import os; os.makedirs('/mnt/data/a/b')")["status"] == "Success"
        for r in (http.get("files/a/content", params=q(ident, V2410)),
                  http.get("files/a%2Fb/content", params=q(ident, V2510)),
                  http.get("files/content/a", params=q(ident, V1))):
            assert r.status_code == 400, r.text
            assert "is a directory" in r.json()["error"]["message"]


needs_mount = pytest.mark.skipif(
    shutil.which("unshare") is None
    or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0,
    reason="needs unshare -m (a private mount namespace) to give the pool a small disk")


@needs_mount
def test_a_full_disk_is_a_507_for_other_sessions_and_nothing_is_left_staged(tmp_path):
    data = tmp_path / "small-disk"
    data.mkdir()
    # the pool's --data-dir on an 8 MB tmpfs of its own (private mount namespace: gone with the process)
    wrap = ("unshare", "-m", "--propagation", "private", "sh", "-c",
            f'mount -t tmpfs -o size=8m tmpfs "{data}" && exec "$@"', "sh")
    p = start_pool(data, "--ready", "0", wrap=wrap)
    try:
        # the tmpfs is seen through the pool's own root (its mount namespace)
        disk = Path(f"/proc/{p.proc.pid}/root") / str(data).lstrip("/")
        assert shutil.disk_usage(disk).total <= 8 << 20
        _fill_and_upload(p, disk / ".staging")
    finally:
        p.stop()
    assert not any("Traceback" in line for line in p.output)


def _fill_and_upload(p, staging: Path) -> None:
    with connect(p) as http:
        filler, other = str(uuid.uuid4()), str(uuid.uuid4())
        fill = ("chunk = b'f' * 65536\nwith open('/mnt/data/fill', 'wb') as f:\n    try:\n"
                "        while True:\n            f.write(chunk)\n            f.flush()\n"
                "    except OSError as e:\n        print(e.errno)\n")
        assert v1_execute(http, filler, fill)["stdout"].strip() == "28"  # ENOSPC inside the session
        r = http.post("files", params=q(other, V2510), files={"file": ("up.bin", os.urandom(1 << 20))})
        assert r.status_code == 507, r.text
        assert error_code(r) == "InsufficientStorage" and "disk is full" in r.json()["error"]["message"]
        assert http.get("files", params=q(other, V2510)).json()["value"] == []
        # space freed, the same upload works
        assert http.delete("files/fill", params=q(filler, V2510)).status_code == 204
        r = http.post("files", params=q(other, V2510), files={"file": ("up.bin", b"now it fits")})
        assert r.status_code == 200, r.text
        assert [f for f in staging.rglob("*") if f.is_file()] == []
