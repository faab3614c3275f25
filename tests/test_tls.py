"""HTTPS for the local pool: the generated CA (our client, an unmodified httpx through SSL_CERT_FILE, the CLI),
a wrong CA refused with one clear line, the user's own --certfile/--keyfile, and ``pool start --tls``."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from client.conftest import Recording
from conftest import LIVE, start_pool, wait_until

import aca_kernel

pytestmark = pytest.mark.skipif(LIVE, reason="local pool only")

V2 = "2025-10-02-preview"


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("aca-sessions")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "aca_kernel"]


def ca_bundle_of(pool) -> Path:
    # The line right after the endpoint's, which start_pool waits for: it may still be on its way.
    lines = wait_until(lambda: [line for line in pool.output if line.startswith("ca bundle: ")])
    assert len(lines) == 1, pool.output
    return Path(lines[0].split(": ", 1)[1].strip())


def self_signed(directory: Path, name: str = "own") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as a user might bring them (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test cert")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    certfile, keyfile = directory / f"{name}-cert.pem", directory / f"{name}-key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return certfile, keyfile


@pytest.fixture
def tls_pool(make_pool):
    pool = make_pool("--tls", "--ready", "1")
    assert pool.endpoint.startswith("https://127.0.0.1:")
    return pool


def test_generated_ca_serves_our_client(tls_pool):
    ca = ca_bundle_of(tls_pool)
    lines = [line.split(": ", 1)[0] for line in tls_pool.output if not line[:1].isdigit()]
    assert lines[:2] == ["pool endpoint", "ca bundle"]  # the second line, right after the endpoint
    with aca_kernel.SessionsClient(tls_pool.endpoint, tls_pool.token, api_version=V2, verify=ca) as client:
        assert client.execute("print('over https'); 6 * 7").result == 42
        client.upload_file(b"secret", "t.txt")
        assert client.download_file("t.txt") == b"secret"
        assert client.get_pool_metadata().runtimes


def test_the_server_certificate_names_localhost_and_both_loopback_addresses(tls_pool):
    from cryptography import x509

    ca = ca_bundle_of(tls_pool)
    cert = x509.load_pem_x509_certificate((ca.parent / "server.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert {str(a) for a in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    # The name a user is as likely to type, checked against the certificate's names rather than its address (in
    # the SAN, where browsers and Go look: OpenSSL alone would still accept a common name of localhost).
    by_name = tls_pool.endpoint.replace("https://127.0.0.1:", "https://localhost:")
    with aca_kernel.SessionsClient(by_name, tls_pool.token, api_version=V2, verify=ca) as client:
        assert client.execute("6 * 7").result == 42


def test_a_pool_on_ipv6_loopback_serves_https(make_pool):
    pool = make_pool("--tls", "--host", "::1", "--ready", "0")
    assert pool.endpoint.startswith("https://[::1]:")
    with aca_kernel.SessionsClient(pool.endpoint, pool.token, verify=ca_bundle_of(pool)) as client:
        assert client.list_files() == []


def test_an_unmodified_httpx_trusts_it_through_ssl_cert_file(tls_pool):
    # A third-party client knows nothing of ours: the usual environment variable is all it gets.
    code = textwrap.dedent(f"""
        import httpx
        r = httpx.get({tls_pool.endpoint + '/listSessions'!r}, params={{"api-version": {V2!r}}},
                      headers={{"Authorization": "Bearer {tls_pool.token}"}})
        print(r.status_code, r.json()["count"])
    """)
    env = {**os.environ, "SSL_CERT_FILE": str(ca_bundle_of(tls_pool))}
    env.pop("SSL_CERT_DIR", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "200"


def test_our_client_trusts_it_through_ssl_cert_file_too(tls_pool):
    code = textwrap.dedent(f"""
        import aca_kernel
        with aca_kernel.SessionsClient({tls_pool.endpoint!r}, {tls_pool.token!r}) as c:
            print(c.execute("1 + 1").result)
    """)
    env = {**os.environ, "SSL_CERT_FILE": str(ca_bundle_of(tls_pool))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2"


def test_a_wrong_ca_is_refused_with_one_clear_line(tls_pool, tmp_path):
    wrong, _ = self_signed(tmp_path, "wrong")
    rec = Recording(verify=ssl.create_default_context(cafile=str(wrong)))
    with aca_kernel.SessionsClient(tls_pool.endpoint, tls_pool.token, transport=rec) as client:
        with pytest.raises(aca_kernel.ServiceRequestError) as info:
            client.list_files()
    message = str(info.value)
    assert message.startswith(f"The TLS certificate of {tls_pool.endpoint}/ is not trusted (")
    assert "SSL_CERT_FILE" in message and "verify=" in message and "\n" not in message
    assert not info.value.may_have_executed
    assert len(rec.requests) == 1  # an untrusted certificate is not retried
    # The CLI says the same, on one line, with its exit code for service errors.
    env = {**os.environ, "SSL_CERT_FILE": str(wrong), "ACA_TOKEN": tls_pool.token}
    out = subprocess.run([*_cli(), "exec", "--endpoint", tls_pool.endpoint, "--session", "tls-test", "-c", "1"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 3
    assert out.stderr.startswith("aca-sessions: error: The TLS certificate of ") and out.stderr.count("\n") == 1
    assert tls_pool.token not in out.stderr
    # And a third-party httpx refuses it as well: the pool is not trusted by accident.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(tls_pool.endpoint + "/openapi.json", verify=ssl.create_default_context(cafile=str(wrong)))


def test_the_ca_is_made_once_and_limited_to_loopback(make_pool, tmp_path):
    from cryptography import x509

    first = make_pool("--tls", "--ready", "0")
    ca = ca_bundle_of(first)
    pem = ca.read_bytes()
    first.stop()
    assert ca.parent == first.data_dir / "tls"
    assert (ca.parent.stat().st_mode & 0o777) == 0o700
    for name in ("ca-key.pem", "server-key.pem"):
        assert (ca.parent / name).stat().st_mode & 0o077 == 0, name
    cert = x509.load_pem_x509_certificate(pem)
    constraints = cert.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    assert {str(n.value) for n in constraints.value.permitted_subtrees} == {"localhost", "127.0.0.0/8", "::1/128"}
    # A restart on the same data folder keeps the CA (a trust set up once keeps working).
    again = start_pool(first.data_dir, "--tls", "--ready", "0")
    try:
        assert ca_bundle_of(again) == ca and ca.read_bytes() == pem
        with aca_kernel.SessionsClient(again.endpoint, again.token, verify=ca) as client:
            assert client.list_files() == []
    finally:
        again.stop()
    # A server certificate gone missing is issued again from the same CA.
    (ca.parent / "server.pem").unlink()
    third = start_pool(first.data_dir, "--tls", "--ready", "0")
    try:
        assert ca.read_bytes() == pem and (ca.parent / "server.pem").exists()
        with aca_kernel.SessionsClient(third.endpoint, third.token, verify=ca) as client:
            assert client.list_files() == []
    finally:
        third.stop()


def test_users_own_certificate(make_pool, tmp_path):
    certfile, keyfile = self_signed(tmp_path)
    pool = make_pool("--certfile", str(certfile), "--keyfile", str(keyfile), "--ready", "0")
    assert pool.endpoint.startswith("https://")
    # Nothing of ours to trust: no CA line (the token line would follow it; the test passes --token, so the
    # endpoint line is the last one the pool prints on stdout).
    assert not [line for line in pool.output if line.startswith("ca bundle:")]
    with aca_kernel.SessionsClient(pool.endpoint, pool.token, verify=certfile) as client:
        assert client.list_files() == []
    # Certificate and key in one PEM file, as some tools write them.
    combined = tmp_path / "combined.pem"
    combined.write_bytes(certfile.read_bytes() + keyfile.read_bytes())
    pool2 = make_pool("--certfile", str(combined), "--ready", "0")
    with aca_kernel.SessionsClient(pool2.endpoint, pool2.token, verify=str(certfile)) as client:
        assert client.list_files() == []


@pytest.mark.parametrize(("args", "expected"), [
    (["--keyfile", "k.pem"], "--keyfile needs --certfile"),
    (["--certfile", "missing.pem"], "cannot read"),
    (["--certfile", "bad.pem"], "cannot use"),
    # Checked before anything is bound: never a certificate of ours for a name it does not cover.
    (["--tls", "--host", "192.0.2.1"], "--tls makes a certificate for localhost, 127.0.0.1 and ::1 only"),
])
def test_unusable_tls_settings_are_one_line_and_exit_2(tmp_path, args, expected):
    (tmp_path / "bad.pem").write_text("not a certificate")
    cmd = [sys.executable, "-m", "aca_kernel.emulator", "--port", "0", "--no-sandbox", "--log-level", "error", "--data-dir",
           str(tmp_path / "d"), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert expected in out.stderr and out.stderr.strip().count("\n") == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "d" / "tls").exists()


def test_pool_start_tls(tmp_path):
    env = {**os.environ, "ACA_LOCAL_POOL_DIR": str(tmp_path / "state")}
    env.pop("ACA_POOL_MANAGEMENT_ENDPOINT", None)
    env.pop("SSL_CERT_FILE", None)
    try:
        out = subprocess.run([*_cli(), "pool", "start", "--tls"], capture_output=True, text=True, timeout=120,
                             env=env)
        assert out.returncode == 0, out.stderr
        assert "endpoint: https://127.0.0.1:" in out.stdout
        ca = next(line.split(": ", 1)[1] for line in out.stdout.splitlines() if "ca bundle:" in line)
        assert Path(ca).is_file()
        # The CLI, the kernel's context and the status check all trust the pool through its bundle.
        ran = subprocess.run([*_cli(), "exec", "-c", "print('tls pool')"], capture_output=True, text=True,
                             timeout=120, env=env)
        assert ran.returncode == 0 and ran.stdout == "tls pool\n", ran.stderr
        status = subprocess.run([*_cli(), "pool", "status"], capture_output=True, text=True, timeout=60, env=env)
        assert status.returncode == 0 and f"ca bundle: {ca}" in status.stdout
        code = ("from aca_kernel.notebook._context import ACAContext\n"
                "from aca_kernel.notebook._runner import RemoteRunner\n"
                "ctx = ACAContext()\nprint(RemoteRunner(ctx).run('6 * 7').outputs[-1]['data']['text/plain'])\n"
                "ctx.close()")
        ctx = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
        assert ctx.returncode == 0 and ctx.stdout.strip() == "42", ctx.stderr
        # An HTTP pool already running is not silently kept when HTTPS is asked for.
        again = subprocess.run([*_cli(), "pool", "start", "--tls"], capture_output=True, text=True, timeout=60,
                               env=env)
        assert again.returncode == 0 and "running" in again.stdout
    finally:
        subprocess.run([*_cli(), "pool", "stop"], capture_output=True, text=True, timeout=60, env=env)


def test_pool_start_tls_refuses_to_reuse_a_plain_pool(tmp_path):
    env = {**os.environ, "ACA_LOCAL_POOL_DIR": str(tmp_path / "state")}
    env.pop("ACA_POOL_MANAGEMENT_ENDPOINT", None)
    try:
        assert subprocess.run([*_cli(), "pool", "start"], capture_output=True, timeout=120, env=env).returncode == 0
        out = subprocess.run([*_cli(), "pool", "start", "--tls"], capture_output=True, text=True, timeout=60,
                             env=env)
        assert out.returncode == 3
        assert "already running over HTTP" in out.stderr and "pool stop" in out.stderr
        assert out.stderr.count("\n") == 1
    finally:
        subprocess.run([*_cli(), "pool", "stop"], capture_output=True, text=True, timeout=60, env=env)


def test_lab_leaves_a_tls_pool_to_the_kernels_own_lookup(tmp_path, monkeypatch):
    # `aca-sessions lab` becomes JupyterLab (execve): capture the environment it would hand over, then run what a
    # kernel runs with it. An endpoint in that environment would lose the pool's CA; the local-pool lookup keeps it.
    from aca_kernel import cli

    env = {**os.environ, "ACA_LOCAL_POOL_DIR": str(tmp_path / "state")}
    env.pop("ACA_POOL_MANAGEMENT_ENDPOINT", None)
    env.pop("ACA_TOKEN", None)
    monkeypatch.setattr(os, "environ", env)
    captured: dict[str, dict[str, str]] = {}

    def fake_execve(path, argv, environment):
        captured["env"] = dict(environment)
        raise SystemExit(0)

    monkeypatch.setattr(os, "execve", fake_execve)
    monkeypatch.setattr("aca_kernel.kernel.install.ensure_kernelspec", lambda env, root: None)
    try:
        assert subprocess.run([*_cli(), "pool", "start", "--tls"], capture_output=True, timeout=120,
                              env=env).returncode == 0
        with pytest.raises(SystemExit):
            cli.main(["lab", "--no-browser"])
        lab_env = captured["env"]
        assert "ACA_POOL_MANAGEMENT_ENDPOINT" not in lab_env and "ACA_TOKEN" not in lab_env
        code = ("from aca_kernel.notebook._context import ACAContext\n"
                "from aca_kernel.notebook._runner import RemoteRunner\n"
                "ctx = ACAContext()\nprint(RemoteRunner(ctx).run('6 * 7').outputs[-1]['data']['text/plain'])\n"
                "ctx.close()")
        kernel = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                                env=lab_env)
        assert kernel.returncode == 0 and kernel.stdout.strip() == "42", kernel.stderr
    finally:
        subprocess.run([*_cli(), "pool", "stop"], capture_output=True, timeout=60, env=env)
