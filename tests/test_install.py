"""The kernelspec: what ``aca-sessions install`` writes, and that the wheel ships it as shared data."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from aca_kernel.kernel import install as install_mod

REPO = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("aca-sessions")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "aca_kernel"]


def _spec_dir(prefix: Path, name: str = "aca_sessions") -> Path:
    return prefix / "share" / "jupyter" / "kernels" / name


def test_source_kernel_json_is_the_documented_spec():
    spec = json.loads((REPO / "kernelspec" / "aca_sessions" / "kernel.json").read_text())
    assert spec == {
        "argv": ["python", "-m", "aca_kernel.kernel", "-f", "{connection_file}"],
        "display_name": "ACA Sessions",
        "language": "python",
        "interrupt_mode": "message",
        "kernel_protocol_version": "5.3",
        "metadata": {"debugger": False},
    }
    for logo in ("logo-32x32.png", "logo-64x64.png"):
        assert (REPO / "kernelspec" / "aca_sessions" / logo).read_bytes().startswith(PNG_SIGNATURE)
    assert (REPO / "kernelspec" / "aca_sessions" / "logo-svg.svg").read_text().lstrip().startswith("<svg")


def test_cli_install_prefix_writes_kernel_json_with_env(tmp_path: Path):
    proc = subprocess.run(
        [*_cli(), "install", "--prefix", str(tmp_path), "--env", "ACA_POOL_MANAGEMENT_ENDPOINT=http://127.0.0.1:1/",
         "--env", "ACA_API_VERSION=2025-02-02-preview"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    dest = _spec_dir(tmp_path)
    assert str(dest) in proc.stdout
    spec = json.loads((dest / "kernel.json").read_text())
    # The CLI's interpreter, which may be python3 where pytest runs as python: the same binary either way.
    assert Path(spec["argv"][0]).resolve() == Path(sys.executable).resolve()
    assert spec["argv"][1:] == ["-m", "aca_kernel.kernel", "-f", "{connection_file}"]
    assert spec["display_name"] == "ACA Sessions"
    assert spec["language"] == "python"
    assert spec["interrupt_mode"] == "message"
    assert spec["metadata"] == {"debugger": False}
    assert spec["kernel_protocol_version"] == install_mod.kernel_protocol_version()
    assert spec["env"] == {"ACA_POOL_MANAGEMENT_ENDPOINT": "http://127.0.0.1:1/",
                           "ACA_API_VERSION": "2025-02-02-preview"}
    assert (dest / "logo-64x64.png").read_bytes().startswith(PNG_SIGNATURE)


def test_installed_spec_is_found_by_jupyter_client(tmp_path: Path):
    from jupyter_client.kernelspec import KernelSpecManager

    install_mod.install(prefix=tmp_path, name="aca_test", display_name="ACA test")
    ksm = KernelSpecManager(kernel_dirs=[str(tmp_path / "share" / "jupyter" / "kernels")])
    spec = ksm.get_kernel_spec("aca_test")
    assert spec.display_name == "ACA test"
    assert spec.interrupt_mode == "message"
    assert spec.argv[1:3] == ["-m", "aca_kernel.kernel"]
    assert "env" not in json.loads((_spec_dir(tmp_path, "aca_test") / "kernel.json").read_text())


def test_declared_protocol_version_is_what_the_kernel_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # The shipped spec, the installed spec and a running kernel's kernel_info reply all state one version, and
    # it stays below 5.5: that would promise the JEP 66 handshake, which the kernel (ipykernel) does not do.
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import start_new_kernel

    shipped = json.loads((REPO / "kernelspec" / "aca_sessions" / "kernel.json").read_text())
    assert shipped["kernel_protocol_version"] == install_mod.kernel_protocol_version()
    install_mod.install(prefix=tmp_path, name="aca_proto")
    ksm = KernelSpecManager(kernel_dirs=[str(tmp_path / "share" / "jupyter" / "kernels")])
    spec = ksm.get_kernel_spec("aca_proto")
    assert spec.kernel_protocol_version == shipped["kernel_protocol_version"]
    assert tuple(int(x) for x in spec.kernel_protocol_version.split(".")) < (5, 5)
    # No endpoint and no pool are needed for kernel_info: the kernel touches the network only for a cell.
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share" / "jupyter"))
    km, kc = start_new_kernel(kernel_name="aca_proto", startup_timeout=60)
    try:
        reply = kc.kernel_info(reply=True, timeout=60)
        assert reply["content"]["protocol_version"] == spec.kernel_protocol_version
        assert reply["content"]["implementation"] == "aca_sessions"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_named_install_gets_a_distinct_display_name(tmp_path: Path):
    dest = install_mod.install(prefix=tmp_path, name="aca-prod")
    assert json.loads((Path(dest) / "kernel.json").read_text())["display_name"] == "ACA Sessions (aca-prod)"


@pytest.mark.parametrize("bad", ["NOEQUALS", "1BAD=x", "sp ace=y"])
def test_bad_env_is_a_usage_error_that_does_not_echo_the_value(tmp_path: Path, bad: str):
    proc = subprocess.run([*_cli(), "install", "--prefix", str(tmp_path), "--env", bad],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--env" in proc.stderr
    assert "Traceback" not in proc.stderr
    if "=" not in bad:
        assert bad not in proc.stderr  # may be a token pasted with the wrong separator
    assert not _spec_dir(tmp_path).exists()


def test_user_and_prefix_are_exclusive(tmp_path: Path):
    proc = subprocess.run([*_cli(), "install", "--user", "--prefix", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "not allowed with" in proc.stderr


def test_module_entry_point_installs(tmp_path: Path):
    proc = subprocess.run([sys.executable, "-m", "aca_kernel.kernel.install", "--prefix", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (_spec_dir(tmp_path) / "kernel.json").is_file()


def test_wheel_ships_the_kernelspec(tmp_path: Path):
    src = tmp_path / "src"
    # Build from a copy so the build never touches the shared checkout (and skips the 1 GB .venv).
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info",
                                                              "build", "dist", "examples", "artifacts"))
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(src)]
    if importlib.util.find_spec("hatchling") is not None:
        cmd.insert(4, "--no-build-isolation")  # works offline when the backend is already installed
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = (tmp_path / "dist").glob("aca_sessions-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        kjson = [n for n in names if n.endswith(".data/data/share/jupyter/kernels/aca_sessions/kernel.json")]
        assert len(kjson) == 1, names
        spec = json.loads(zf.read(kjson[0]))
        base = kjson[0].rsplit("/", 1)[0]
        assert {f"{base}/logo-32x32.png", f"{base}/logo-64x64.png", f"{base}/logo-svg.svg"} <= set(names)
        assert zf.read(f"{base}/logo-64x64.png").startswith(PNG_SIGNATURE)
    # A static "python" is right in a wheel: jupyter_client swaps it for the environment's interpreter.
    assert spec["argv"] == ["python", "-m", "aca_kernel.kernel", "-f", "{connection_file}"]
    assert "aca_kernel/kernel/install.py" in names


def test_unwritable_prefix_is_one_line_and_exit_3(tmp_path: Path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert install_mod.main(["--prefix", str(blocker)]) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: cannot install the kernelspec: ") and err.count("\n") == 1
    assert "try --user or --sys-prefix" in err and "()" not in err
