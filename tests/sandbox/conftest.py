"""Fixtures for the sandbox tests: a loopback sandbox, an HTTP client and a webhook receiver."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.config import SandboxConfig
from sandbox.testing import RunningSandbox, run_sandbox_in_thread

IMP_KEY = "test-imp-key"
IMP_SECRET = "test-imp-secret"
APPROVE = "4111-1111-1111-1111"
DECLINE = "4000-0000-0000-0002"


class SandboxClient:
    """httpx client bound to one sandbox, with token handling and shortcuts."""

    def __init__(self, url: str, key: str = IMP_KEY, secret: str = IMP_SECRET) -> None:
        self.url = url
        self.key, self.secret = key, secret
        self.http = httpx.Client(base_url=url, timeout=10, trust_env=False)
        self._token: str | None = None

    def token(self, fresh: bool = False) -> str:
        if self._token is None or fresh:
            r = self.http.post("/users/getToken", json={"imp_key": self.key, "imp_secret": self.secret})
            assert r.status_code == 200, r.text
            self._token = r.json()["response"]["access_token"]
        return self._token

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, headers=self.headers(), **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.post(path, headers=self.headers(), **kw)

    def put(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.put(path, headers=self.headers(), **kw)

    def cancel(self, **params: Any) -> dict[str, Any]:
        r = self.post("/payments/cancel", json=params)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def checkout(self, merchant_uid: str, amount: Any = 50000, **kw: Any) -> dict[str, Any]:
        body = {"merchant_uid": merchant_uid, "amount": amount, "card_number": APPROVE, **kw}
        r = self.http.post("/sandbox/checkout", json=body)
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        return result

    def paid(self, merchant_uid: str, amount: Any = 50000, **kw: Any) -> str:
        result = self.checkout(merchant_uid, amount, **kw)
        assert result["success"], result
        imp_uid: str = result["imp_uid"]
        return imp_uid

    def payment(self, imp_uid: str) -> dict[str, Any]:
        r = self.get(f"/payments/{imp_uid}")
        assert r.status_code == 200, r.text
        payment: dict[str, Any] = r.json()["response"]
        return payment

    def config(self, **patch: Any) -> dict[str, Any]:
        r = self.http.post("/sandbox/config", json=patch)
        assert r.status_code == 200, r.text
        cfg: dict[str, Any] = r.json()
        return cfg

    def calls(self) -> dict[str, Any]:
        calls: dict[str, Any] = self.http.get("/sandbox/calls").json()
        return calls

    def deliveries(self) -> list[dict[str, Any]]:
        deliveries: list[dict[str, Any]] = self.http.get("/sandbox/webhooks").json()["deliveries"]
        return deliveries

    def close(self) -> None:
        self.http.close()


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[RunningSandbox]:
    with run_sandbox_in_thread(SandboxConfig(imp_key=IMP_KEY, imp_secret=IMP_SECRET)) as sb:
        yield sb


@pytest.fixture
def sandbox(sandbox_server: RunningSandbox) -> RunningSandbox:
    """The shared sandbox, reset to a clean state for this test."""
    r = httpx.post(sandbox_server.url + "/sandbox/reset", trust_env=False)
    r.raise_for_status()
    return sandbox_server


@pytest.fixture
def client(sandbox: RunningSandbox) -> Iterator[SandboxClient]:
    c = SandboxClient(sandbox.url)
    yield c
    c.close()


def wait_until(predicate: Any, timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


@pytest.fixture
def wait() -> Any:
    """The :func:`wait_until` poller (fixtures avoid importing conftest by name)."""
    return wait_until


@pytest.fixture
def make_client() -> Iterator[Any]:
    """Factory of :class:`SandboxClient` for other sandboxes/credentials; closed after the test."""
    made: list[SandboxClient] = []

    def factory(url: str, key: str = IMP_KEY, secret: str = IMP_SECRET) -> SandboxClient:
        c = SandboxClient(url, key, secret)
        made.append(c)
        return c

    yield factory
    for c in made:
        c.close()
