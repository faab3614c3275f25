"""Isolation of a sandboxed session kernel, checked from inside real kernels through SessionKernel.

Each check runs code in the session and compares what it sees with the host: no network, read-only system,
nothing of the host's home, /tmp or other sessions, no capabilities, its own PID namespace.
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
from pathlib import Path

import pytest
from _pool_http import LIVE

from aca_kernel.emulator.runtime import SandboxConfig, SessionKernel, check_sandbox
from aca_kernel.emulator.sandbox import bwrap_argv, python_bind_paths

pytestmark = [pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (bwrap)"),
              pytest.mark.emulator_only, pytest.mark.skipif(LIVE, reason="tests the emulator's sandbox")]


async def value(kernel: SessionKernel, code: str):
    """Run code whose last line is json.dumps(...) and return the decoded value."""
    outcome = await kernel.execute("import json, os\n" + code, 60)
    assert outcome.status == "succeeded", outcome.stderr
    return json.loads(outcome.result)


PROBE = """
def probe(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return e.errno
"""


def test_check_sandbox_accepts_this_machine() -> None:
    check_sandbox(SandboxConfig())


def test_argv_keeps_the_required_flags(tmp_path: Path) -> None:
    argv = bwrap_argv(python=SandboxConfig().python, data_dir=tmp_path, ipc_dir=tmp_path / "ipc",
                      setup_file=tmp_path / "s.py")
    for flag in ("--unshare-all", "--die-with-parent", "--clearenv"):
        assert flag in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    # the tmpfs must precede any bind below /tmp, or it would hide it
    assert argv.index("/tmp") < argv.index(str(tmp_path))


async def test_no_network(make_kernel) -> None:
    kernel = await make_kernel()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        result = await value(kernel, PROBE + f"""
import socket
json.dumps([probe(lambda: socket.create_connection(("127.0.0.1", {port}), timeout=5)),
            probe(lambda: socket.create_connection(("1.1.1.1", 80), timeout=5)),
            sorted(os.listdir("/sys/class/net")) if os.path.exists("/sys/class/net") else ["lo"]])
""")
    finally:
        listener.close()
    import errno
    assert result[0] == errno.ECONNREFUSED  # its own loopback: the host's listener is not there
    assert result[1] in (errno.ENETUNREACH, errno.EHOSTUNREACH)
    assert result[2] == ["lo"]


async def test_system_is_read_only_and_data_is_writable(make_kernel) -> None:
    kernel = await make_kernel()
    python_dir = python_bind_paths(kernel.config.python)[0]
    result = await value(kernel, PROBE + f"""
json.dumps([probe(lambda: open(p, "w")) for p in ["/usr/aca-x", "/etc/aca-x", {python_dir + "/aca-x"!r}]]
           + [probe(lambda: open("/mnt/data/ok.txt", "w").write("hi")), os.getcwd()])
""")
    import errno
    assert all(r in (errno.EROFS, errno.EPERM, errno.EACCES) for r in result[:3]), result
    assert result[3:] == ["ok", "/mnt/data"]
    assert (kernel.data_dir / "ok.txt").read_text() == "hi"
    assert not Path("/usr/aca-x").exists() and not Path("/etc/aca-x").exists()


async def test_host_home_tmp_and_work_are_invisible(make_kernel) -> None:
    kernel = await make_kernel()
    with tempfile.NamedTemporaryFile(dir="/tmp", prefix="aca-marker-") as marker:
        result = await value(kernel, f"""
def walk(top):
    found = []
    for root, dirs, files in os.walk(top):
        found += [os.path.join(root, n) for n in files]
    return found
json.dumps([os.path.exists({marker.name!r}), os.listdir("/root") if os.path.exists("/root") else [],
            [p for p in os.listdir("/") if p not in ("proc", "dev", "sys")], os.path.exists({__file__!r}),
            [p for p in walk("/tmp") if not p.startswith("/tmp/home/")]])
""")
    marker_seen, root_entries, top, source_seen, tmp_files = result
    assert marker_seen is False
    allowed = {Path(p).relative_to("/root").parts[0] for p in python_bind_paths(kernel.config.python)
               if p.startswith("/root/")}
    assert set(root_entries) <= allowed, root_entries
    assert "home" not in top, top
    # only the Python installation is bound: the project checkout (this very file) stays outside
    assert source_seen is False
    visible_roots = {"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "mnt", "opt", "tmp"}
    visible_roots |= {Path(p).parts[1] for p in python_bind_paths(kernel.config.python)}
    assert set(top) <= visible_roots, top
    # /tmp holds only the session's own socket directory (connection file, sockets), and the Python
    # installation when it lives under /tmp (a checkout cloned there, as CI may do)
    own = [str(kernel._ipc_dir), *python_bind_paths(kernel.config.python)]
    assert all(any(p.startswith(o.rstrip("/") + "/") for o in own) for p in tmp_files), \
        [p for p in tmp_files if not any(p.startswith(o.rstrip("/") + "/") for o in own)][:5]


async def test_sessions_cannot_see_each_other(make_kernel) -> None:
    a = await make_kernel("a")
    b = await make_kernel("b")
    await value(a, "open('/mnt/data/a-secret.txt', 'w').write('A'); json.dumps(1)")
    seen = await value(b, f"json.dumps([os.listdir('/mnt/data'), os.path.exists({str(a.data_dir)!r}), "
                          f"os.path.exists({str(a.data_dir.parent)!r})])")
    assert seen == [[], False, False]
    assert (a.data_dir / "a-secret.txt").read_text() == "A"
    assert not (b.data_dir / "a-secret.txt").exists()


async def test_no_privileges(make_kernel) -> None:
    kernel = await make_kernel()
    result = await value(kernel, """
import ctypes, ctypes.util, subprocess
caps = {l.split(":")[0]: int(l.split()[1], 16) for l in open("/proc/self/status") if l.startswith("Cap")}
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
MS_REMOUNT, MS_BIND = 32, 4096
rc = libc.mount(b"none", b"/usr", None, MS_REMOUNT | MS_BIND, None)
mount_errno = ctypes.get_errno()
cmd = subprocess.run(["mount", "-o", "remount,rw,bind", "/usr"], capture_output=True)
try:
    shadow = open("/etc/shadow").read()
except OSError as e:
    shadow = e.errno
json.dumps([caps, rc, mount_errno, cmd.returncode, shadow])
""")
    caps, rc, mount_errno, cmd_rc, shadow = result
    assert caps["CapEff"] == 0 and caps["CapPrm"] == 0, caps
    import errno
    assert rc == -1 and mount_errno == errno.EPERM
    assert cmd_rc != 0
    assert shadow in ("", errno.EACCES, errno.EPERM)  # masked with /dev/null
    assert Path("/etc/shadow").stat().st_size > 0


async def test_own_pid_namespace(make_kernel) -> None:
    kernel = await make_kernel()
    pid, cmdlines = await value(kernel, """
cmds = []
for p in sorted(filter(str.isdigit, os.listdir("/proc")), key=int):
    try:
        cmds.append(open(f"/proc/{p}/cmdline").read().replace("\\0", " "))
    except OSError:
        pass
json.dumps([os.getpid(), cmds])
""")
    assert pid < 10
    assert len(cmdlines) < 10
    # only the sandbox's own init (bwrap, pid 1) and the kernel: none of the host's processes
    assert cmdlines[0].startswith("bwrap --args 3 ")
    assert all("ipykernel_launcher" in c for c in cmdlines[1:]), cmdlines
    # bwrap's options (with host paths) came from a file, not its command line
    assert not any(str(kernel.data_dir) in c for c in cmdlines)
