"""FastAPI dependencies: the runtime the app serves with, and the internal token gate."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request

from api.errors import InternalTokenRequired
from services.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    """The app's runtime (set by create_app's lifespan, or by a test before serving)."""
    return request.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def require_internal_token(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    """Bearer token for internal routes, compared in constant time."""
    expected = get_runtime(request).settings.internal_api_token.get_secret_value()
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), expected.encode()):
        raise InternalTokenRequired()
