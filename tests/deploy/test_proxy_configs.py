"""The deploy guide's reverse-proxy examples pass their own program's configuration check."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.proxy_support import CADDYFILE, binary, nginx_test, render_nginx
from tests.servers import free_port


def test_the_nginx_example_passes_nginx_t(tmp_path: Path) -> None:
    site = render_nginx(tmp_path, http_port=free_port(), https_port=free_port(), dashboard_port=8501, api_port=8000)
    result = nginx_test(site)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_the_caddy_example_passes_caddy_validate() -> None:
    caddy = binary("caddy", "caddy")
    result = subprocess.run(
        [caddy, "validate", "--adapter", "caddyfile", "--config", str(CADDYFILE)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid configuration" in result.stdout + result.stderr
