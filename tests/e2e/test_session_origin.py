"""The sign-in cookie is honoured only on the dashboard's own origin. Browsers send cookies to every port
of a host, and Streamlit lets in a websocket from any port of an allowed host name: a page served on
another port (the API, the sandbox, any internal tool) must not drive the signed-in dashboard."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page
from streamlit.proto.BackMsg_pb2 import BackMsg
from websockets.sync.client import connect

from dashboard.session_cookie import COOKIE
from tests.e2e.conftest import ADMIN, Stack, login

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SIGNED_IN = "로그아웃".encode()  # the sign-out button: drawn only for a signed-in person


def _page_bytes_seen_through_websocket(stack: Stack, token: str, origin: str) -> bytes:
    """Open the dashboard's websocket as a page on `origin` would (with the browser's cookie), ask for a
    run, and return every frame the dashboard sent back within a few seconds."""
    ws_url = "ws://" + urlsplit(stack.dashboard_url).netloc + "/_stcore/stream"
    message = BackMsg()
    message.rerun_script.query_string = ""
    message.rerun_script.page_script_hash = ""
    frames = b""
    with connect(
        ws_url,
        additional_headers={"Cookie": f"{COOKIE}={token}", "Origin": origin},
        subprotocols=["streamlit"],  # type: ignore[list-item]
        open_timeout=10,
    ) as socket:
        socket.send(message.SerializeToString())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                frame = socket.recv(timeout=1)
            except TimeoutError:
                continue
            frames += frame if isinstance(frame, bytes) else frame.encode()
            if SIGNED_IN in frames:
                break
    return frames


def test_a_page_on_another_port_of_the_same_host_cannot_use_the_sign_in(page: Page, stack: Stack) -> None:
    login(page, stack, *ADMIN)
    (token,) = [c["value"] for c in page.context.cookies() if c["name"] == COOKIE]
    own = "http://" + urlsplit(stack.dashboard_url).netloc
    other_port = "http://" + urlsplit(stack.sandbox_url).netloc  # the same host, another port
    assert SIGNED_IN in _page_bytes_seen_through_websocket(stack, token, own)  # the way in works
    assert SIGNED_IN not in _page_bytes_seen_through_websocket(stack, token, other_port)
