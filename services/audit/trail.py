"""The audit log: who did what, when, to which payment. Append-only."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from services.core.models import AuditEntry


def record(session: Session, *, actor: str, action: str, target: str | None, **detail: Any) -> None:
    session.add(AuditEntry(actor=actor, action=action, target=target, detail=detail or None))
