"""origin-key.sh and install-origin-cert.sh: the key is made on the server once and stays there; the CSR names the hostnames."""

from __future__ import annotations

import subprocess
from pathlib import Path

from dropship.remote import commands


def run(command: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", command], input=stdin, capture_output=True, text=True, timeout=60)


def test_the_key_is_made_once_private_and_the_csr_names_every_hostname(tmp_path: Path) -> None:
    first = run(commands.origin_key(str(tmp_path), ["app.example.com", "www.example.com"]))
    assert first.returncode == 0, first.stderr
    key = tmp_path / "tls" / "key.pem"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "tls").stat().st_mode & 0o777) == "0o700"
    text = run("openssl req -noout -text", stdin=first.stdout).stdout
    assert "Subject: CN = app.example.com" in text
    assert "DNS:app.example.com, DNS:www.example.com" in text
    before = key.read_bytes()
    second = run(commands.origin_key(str(tmp_path), ["app.example.com", "www.example.com"]))
    assert key.read_bytes() == before
    public = "openssl req -noout -pubkey"
    assert run(public, stdin=second.stdout).stdout == run(public, stdin=first.stdout).stdout
    assert "PRIVATE KEY" not in first.stdout + second.stdout


def test_the_certificate_is_installed_beside_its_key_and_anything_else_refused(tmp_path: Path) -> None:
    assert run(commands.origin_key(str(tmp_path), ["app.example.com"])).returncode == 0
    refused = run(commands.install_origin_cert(str(tmp_path)), stdin="not a certificate")
    assert refused.returncode == 1
    assert refused.stderr.strip() == "dropship: stdin holds no PEM certificate"
    assert not (tmp_path / "tls" / "cert.pem").exists()
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    installed = run(commands.install_origin_cert(str(tmp_path)), stdin=pem)
    assert installed.returncode == 0, installed.stderr
    assert (tmp_path / "tls" / "cert.pem").read_text() == pem
