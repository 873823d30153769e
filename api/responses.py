"""JSON answers with money written exactly: Decimals as JSON numbers digit for digit (38.50 stays
38.50), never through float."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel

from services.core import jsonutil


class ExactJSONResponse(JSONResponse):
    """Writes Decimals as exact JSON numbers. A response model is written from its python-mode
    dump (Decimals kept as Decimals), in its fields' order."""

    def render(self, content: Any) -> bytes:
        if isinstance(content, BaseModel):
            content = content.model_dump()
        return jsonutil.dumps_exact(content).encode()
