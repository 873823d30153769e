"""The reverse-proxy examples of the deploy guide (deploy/), made runnable on loopback for tests.

`render_nginx` keeps deploy/nginx-chekar.conf as it is except what a test machine must change:
the listening ports (loopback only, no IPv6), the upstream ports, and the certificate paths (a
throwaway self-signed pair). The nginx binary is Debian's (`apt-get install nginx-light`)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NGINX_SITE = ROOT / "deploy" / "nginx-chekar.conf"
CADDYFILE = ROOT / "deploy" / "Caddyfile"
DASHBOARD_HOST = "ops.chekar.example"
API_HOST = "pay.chekar.example"


def binary(name: str, package: str) -> str:
    """The proxy's own program; missing is a failure (CI installs it), never a skip."""
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if path is None:
        pytest.fail(f"{name} not found: install Debian's `{package}` package (.ci/run does)")
    return path


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "fullchain.pem", directory / "privkey.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={DASHBOARD_HOST}",
         "-addext", f"subjectAltName=DNS:{DASHBOARD_HOST},DNS:{API_HOST}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@dataclass(frozen=True)
class NginxSite:
    config: Path  # the whole nginx.conf (it includes the rendered site)
    http_port: int
    https_port: int


def render_nginx(workdir: Path, *, http_port: int, https_port: int, dashboard_port: int, api_port: int) -> NginxSite:
    cert, key = self_signed_certificate(workdir)
    site = NGINX_SITE.read_text()
    replacements = {
        "/etc/ssl/chekar/fullchain.pem": str(cert),
        "/etc/ssl/chekar/privkey.pem": str(key),
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "http://127.0.0.1:8501": f"http://127.0.0.1:{dashboard_port}",
        "http://127.0.0.1:8000": f"http://127.0.0.1:{api_port}",
    }
    for old, new in replacements.items():
        assert old in site, f"deploy/nginx-chekar.conf no longer has {old!r}: update tests/proxy_support.py"
        site = site.replace(old, new)
    site = "\n".join(line for line in site.splitlines() if "[::]" not in line)
    (workdir / "site.conf").write_text(site)
    temp = workdir / "temp"
    temp.mkdir(exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers keep access to the test's own folders
    config = workdir / "nginx.conf"
    config.write_text(
        f"{user}pid {workdir / 'nginx.pid'};\nerror_log {workdir / 'error.log'};\nevents {{}}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {temp / 'body'};\n  proxy_temp_path {temp / 'proxy'};\n"
        f"  fastcgi_temp_path {temp / 'fastcgi'};\n  uwsgi_temp_path {temp / 'uwsgi'};\n"
        f"  scgi_temp_path {temp / 'scgi'};\n  include {workdir / 'site.conf'};\n}}\n"
    )
    return NginxSite(config, http_port, https_port)


def nginx_test(site: NginxSite) -> subprocess.CompletedProcess[str]:
    nginx = binary("nginx", "nginx-light")
    return subprocess.run([nginx, "-t", "-c", str(site.config)], capture_output=True, text=True, timeout=60)


class RunningNginx:
    def __init__(self, site: NginxSite) -> None:
        self.site = site
        self.process = subprocess.Popen(
            [binary("nginx", "nginx-light"), "-c", str(site.config), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while not _listening(site.https_port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                error_log = site.config.parent / "error.log"
                raise AssertionError(f"nginx did not start: {error_log.read_text() if error_log.exists() else ''}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0
