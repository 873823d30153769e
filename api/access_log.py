"""Export link tokens kept out of uvicorn's access log."""

from __future__ import annotations

import logging
import re


class RedactLinkTokens(logging.Filter):
    """An export link's token is a bearer credential (minutes long): uvicorn's access log, which
    records every request line with its query string, gets an export route's whole query string as
    `?[redacted]` (however the parameter's name is spelled: `%74oken=` is `token=` to the route)."""

    _QUERY = re.compile(r"(/api/exports/[^?\s\"]*)\?[^\s\"]*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, str) and "/api/exports/" in a for a in record.args):
            record.args = tuple(self._QUERY.sub(r"\1?[redacted]", a) if isinstance(a, str) else a for a in record.args)
        return True


REDACT_LINK_TOKENS = RedactLinkTokens()
