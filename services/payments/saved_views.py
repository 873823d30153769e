"""Saved views: each user's named sets of payment filters (services.payments.search.PaymentFilters).

A view whose date range ended on the day it was saved keeps rolling ("the last 7 days"); any
other range is kept as fixed dates. Views are private to their owner.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.auth.access import Actor, Permission, require
from services.core.errors import Conflict, Forbidden, InvalidRequest, NotFound
from services.core.models import SavedView, User
from services.payments.search import PaymentFilters
from services.runtime import Runtime

MAX_NAME_LENGTH = 100
MAX_VIEWS_PER_USER = 50


@dataclass(frozen=True)
class SavedViewInfo:
    id: int
    name: str
    filters: PaymentFilters | None  # None: saved by an older version and no longer readable
    created_at: datetime


def _user_id(session: Session, actor: Actor) -> int:
    user_id = session.scalar(select(User.id).where(User.username == actor.username, User.active.is_(True)))
    if user_id is None:
        raise Forbidden("saved views belong to a signed-in dashboard user")
    return int(user_id)


def _info(view: SavedView, today: date | None) -> SavedViewInfo:
    try:
        filters: PaymentFilters | None = PaymentFilters.from_dict(view.filters, today=today)
    except InvalidRequest:
        filters = None
    return SavedViewInfo(id=view.id, name=view.name, filters=filters, created_at=view.created_at)


def list_views(rt: Runtime, *, actor: Actor, today: date | None = None) -> list[SavedViewInfo]:
    """The actor's own views, by name."""
    require(actor, Permission.VIEW)
    with rt.db.read() as session:
        user_id = _user_id(session, actor)
        views = session.scalars(select(SavedView).where(SavedView.user_id == user_id).order_by(SavedView.name))
        return [_info(view, today) for view in views]


def save_view(
    rt: Runtime, *, actor: Actor, name: str, filters: PaymentFilters, today: date | None = None
) -> SavedViewInfo:
    """Save `filters` under `name`; a view of the same name is replaced."""
    require(actor, Permission.VIEW)
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidRequest(f"a view name is 1 to {MAX_NAME_LENGTH} characters")
    with rt.db.write() as session:
        user_id = _user_id(session, actor)
        view = session.scalar(select(SavedView).where(SavedView.user_id == user_id, SavedView.name == name))
        if view is None:
            count = session.scalar(select(func.count()).select_from(SavedView).where(SavedView.user_id == user_id))
            if (count or 0) >= MAX_VIEWS_PER_USER:
                raise Conflict(f"you already have {MAX_VIEWS_PER_USER} saved views; delete one first")
            view = SavedView(user_id=user_id, name=name, filters=filters.to_dict(today=today))
            session.add(view)
        else:
            view.filters = filters.to_dict(today=today)
        session.flush()
        return _info(view, today)


def delete_view(rt: Runtime, *, actor: Actor, view_id: int) -> None:
    """Delete one of the actor's own views (another user's view is NotFound, as if absent)."""
    require(actor, Permission.VIEW)
    with rt.db.write() as session:
        user_id = _user_id(session, actor)
        view = session.scalar(select(SavedView).where(SavedView.id == view_id, SavedView.user_id == user_id))
        if view is None:
            raise NotFound(f"no saved view #{view_id}")
        session.delete(view)
