"""Database tables (SQLAlchemy 2 typed ORM). Money is `Numeric`, times are timezone-aware UTC."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql.elements import ColumnElement

MONEY = Numeric(20, 2, asdecimal=True)
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def fit(column: Any, value: Any) -> Any:
    """Text cut to `column`'s length (e.g. `Payment.__table__.c.buyer_name`), so what PortOne
    relays fits on PostgreSQL as it does on SQLite (which ignores VARCHAR lengths). Buyers type
    these fields at checkout: nothing in them may stop a payment from being recorded."""
    length = getattr(column.type, "length", None)
    return value[:length] if isinstance(value, str) and length else value


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC; always hands back aware datetimes (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: store timezone-aware UTC times")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), Decimal: MONEY, dict[str, Any]: JSON}


class OrderStatus(enum.StrEnum):
    PENDING = "pending"  # created, waiting for the customer to pay
    AWAITING_DEPOSIT = "awaiting_deposit"  # virtual account issued
    PAID = "paid"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    FAILED = "failed"
    FORGERY = "forgery"  # paid amount differed from the order: cancelled at PortOne


class RefundStatus(enum.StrEnum):
    PENDING = "pending"  # recorded, being sent to PortOne
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # PortOne refused, or it was never applied
    REJECTED = "rejected"  # refused by us before anything was sent (exceeds remainder)
    UNKNOWN = "unknown"  # no answer and PortOne could not be asked yet


class AlertStatus(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    merchant_uid: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    pg: Mapped[str | None] = mapped_column(String(40))
    customer_email: Mapped[str] = mapped_column(String(254))
    customer_name: Mapped[str] = mapped_column(String(100))
    customer_phone: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(24), default=OrderStatus.PENDING)
    prepared_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    payments: Mapped[list[Payment]] = relationship(back_populates="order")


_UNVERIFIED: dict[str, Any] = {"sqlite_where": text("verified IS 0"), "postgresql_where": text("verified IS FALSE")}


class Payment(Base):
    """Our copy of a PortOne payment; PortOne is the source of truth for every field here."""

    __tablename__ = "payments"
    __table_args__ = (
        # No separate paid_at / (status, paid_at) indexes: ix_payments_paid_at_cover serves those
        # queries as fast or faster on both databases (migration 0005 dropped them).
        # The payments page (services/payments/search.py): one index range scan over the date range
        # serves the newest-first page (started_at, id) and the per-currency totals, filters and
        # a broad buyer search included, without reading the table (covering).
        Index(
            "ix_payments_started_at_cover",
            "started_at",
            "id",
            "currency",
            "status",
            "verified",
            "amount",
            "cancel_amount",
            "paid_at",
            "pg_provider",
            "pay_method",
            "buyer_name",
            "buyer_email",
            "buyer_tel",
        ),
        # The same for the "paid time" basis (payments that were paid).
        Index(
            "ix_payments_paid_at_cover",
            "paid_at",
            "id",
            "currency",
            "status",
            "verified",
            "amount",
            "cancel_amount",
            "pg_provider",
            "pay_method",
            "buyer_name",
            "buyer_email",
            "buyer_tel",
        ),
        # Search box: prefix ranges. On PostgreSQL the pattern operator class makes a prefix range
        # index-served whatever the database collation is.
        Index("ix_payments_buyer_email", "buyer_email", postgresql_ops={"buyer_email": "varchar_pattern_ops"}),
        Index("ix_payments_buyer_tel", "buyer_tel", postgresql_ops={"buyer_tel": "varchar_pattern_ops"}),
        Index("ix_payments_buyer_name", "buyer_name", postgresql_ops={"buyer_name": "varchar_pattern_ops"}),
        # Unverified payments (forgeries, payments without a matching order) are rare: the forgery
        # filter finds them here instead of walking the date range. The WHERE is written as the
        # queries write `Payment.verified.is_(False)`, so both planners see that it applies.
        Index("ix_payments_unverified_started_at", "started_at", "id", **_UNVERIFIED),
        Index("ix_payments_unverified_paid_at", "paid_at", "id", **_UNVERIFIED),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    imp_uid: Mapped[str] = mapped_column(String(64), unique=True)
    merchant_uid: Mapped[str] = mapped_column(String(64), index=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal]
    cancel_amount: Mapped[Decimal] = mapped_column(default=Decimal(0))
    currency: Mapped[str] = mapped_column(String(3))
    name: Mapped[str | None] = mapped_column(String(200))
    pg_provider: Mapped[str | None] = mapped_column(String(40))
    pay_method: Mapped[str | None] = mapped_column(String(40))
    card_name: Mapped[str | None] = mapped_column(String(60))
    card_number: Mapped[str | None] = mapped_column(String(40))  # PortOne's masked number only
    buyer_name: Mapped[str | None] = mapped_column(String(100))
    buyer_email: Mapped[str | None] = mapped_column(String(254))
    buyer_tel: Mapped[str | None] = mapped_column(String(40))
    receipt_url: Mapped[str | None] = mapped_column(String(500))
    fail_reason: Mapped[str | None] = mapped_column(String(500))
    started_at: Mapped[datetime | None]
    paid_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    verified: Mapped[bool] = mapped_column(Boolean, default=False)  # amount and currency match the order
    raw: Mapped[dict[str, Any] | None]
    synced_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Refund lease: one refund at a time per payment, portable across SQLite and PostgreSQL.
    refund_lock_owner: Mapped[str | None] = mapped_column(String(64))
    refund_lock_expires_at: Mapped[datetime | None]

    order: Mapped[Order | None] = relationship(back_populates="payments")
    refunds: Mapped[list[Refund]] = relationship(back_populates="payment", order_by="Refund.id")


class PaymentSnapshot(Base):
    """Every payload fetched from PortOne, append-only, beside the parsed record."""

    __tablename__ = "payment_snapshots"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    imp_uid: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(24))  # complete | webhook | refund | sync | reconcile
    body: Mapped[dict[str, Any]]
    fetched_at: Mapped[datetime] = mapped_column(default=utcnow)


class Refund(Base):
    """One row per refund attempt, successful or not; PortOne console cancels get rows too."""

    __tablename__ = "refunds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(String(500))
    requested_by: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(16), default="ops")  # ops | api | forgery | portone
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=RefundStatus.PENDING)
    checksum: Mapped[Decimal | None]
    cancel_amount_before: Mapped[Decimal | None]
    portone_cancellation_id: Mapped[str | None] = mapped_column(String(100), index=True)
    error_code: Mapped[str | None] = mapped_column(String(40))
    error_message: Mapped[str | None] = mapped_column(Text)
    refunded_total: Mapped[Decimal | None]  # PortOne's cancel_amount after this refund
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]
    # A virtual-account refund's account (services.portone.banks): bank code, holder, and the number MASKED
    # (personal data; PortOne needs the full number only in the one cancel call, never stored).
    refund_bank: Mapped[str | None] = mapped_column(String(8))
    refund_holder: Mapped[str | None] = mapped_column(String(50))
    refund_account_masked: Mapped[str | None] = mapped_column(String(40))

    payment: Mapped[Payment] = relationship(back_populates="refunds")


class WebhookEvent(Base):
    """Every delivery to our webhook endpoints, verified or not, with what processing did."""

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    source_ip: Mapped[str | None] = mapped_column(String(64))
    content_type: Mapped[str | None] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text)
    imp_uid: Mapped[str | None] = mapped_column(String(64), index=True)
    merchant_uid: Mapped[str | None] = mapped_column(String(64))
    claimed_status: Mapped[str | None] = mapped_column(String(32))
    verified: Mapped[bool] = mapped_column(Boolean, default=False)  # re-fetched from PortOne
    result: Mapped[str] = mapped_column(String(24), default="received")  # processed | ignored | rejected | error
    detail: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime | None]
    # V2: the webhook-id of a delivery accepted (or being processed); unique, so a replay racing
    # the original cannot also be accepted. Released when processing ends in an error to retry.
    accepted_webhook_id: Mapped[str | None] = mapped_column(String(256), index=True, unique=True)


class Alert(Base):
    """A difference between our records and PortOne's. One open alert per (kind, imp_uid)."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index(
            "uq_alerts_open_kind_imp_uid",
            "kind",
            "imp_uid",
            unique=True,
            sqlite_where=text("status != 'resolved'"),
            postgresql_where=text("status != 'resolved'"),
        ),
        Index("ix_alerts_status_created_at", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    severity: Mapped[str] = mapped_column(String(16))  # critical | high | medium | low
    imp_uid: Mapped[str | None] = mapped_column(String(64))
    merchant_uid: Mapped[str | None] = mapped_column(String(64))
    db_value: Mapped[str | None] = mapped_column(Text)
    portone_value: Mapped[str | None] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=AlertStatus.OPEN)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    acknowledged_by: Mapped[str | None] = mapped_column(String(100))
    resolved_by: Mapped[str | None] = mapped_column(String(100))
    resolution_note: Mapped[str | None] = mapped_column(Text)


def alert_is_open() -> ColumnElement[bool]:
    """The one definition of an open alert, for every count of them (navigation, overview, the
    alert desk): status `open`, raised and not yet taken up. Acknowledged alerts are counted under
    their own status, as the alerts page shows them, and the overview's button lands on its
    default `open` view. (Acknowledged alerts still block a second alert of their kind and
    payment: that index is about unresolved alerts, not open ones.)"""
    return Alert.status == AlertStatus.OPEN


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(60))
    target: Mapped[str | None] = mapped_column(String(100), index=True)
    detail: Mapped[dict[str, Any] | None]


class Role(enum.StrEnum):
    VIEWER = "viewer"  # read; exports with personal data masked
    OPERATOR = "operator"  # + refunds, alert handling
    ADMIN = "admin"  # + users, settings, unmasked exports


class User(Base):
    """A local dashboard account; passwords are argon2 hashes."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), default=Role.VIEWER)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SavedView(Base):
    """A user's named set of payment filters."""

    __tablename__ = "saved_views"
    __table_args__ = (Index("uq_saved_views_user_name", "user_id", "name", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(100))
    filters: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApprovalStatus(enum.StrEnum):
    AWAITING = "awaiting_approval"
    EXECUTING = "executing"  # claimed by an approver, being sent: no longer rejectable
    APPROVED = "approved"  # and sent: see the refund rows
    REJECTED = "rejected"


class RefundRequest(Base):
    """Maker-checker: a refund above the threshold waits here for a second operator."""

    __tablename__ = "refund_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[str | None] = mapped_column(String(64), index=True)
    imp_uid: Mapped[str] = mapped_column(String(64), index=True)
    amount: Mapped[Decimal | None]  # None: the whole remainder
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(String(500))
    requested_by: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(24), default=ApprovalStatus.AWAITING, index=True)
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decision_note: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    refund_id: Mapped[int | None] = mapped_column(ForeignKey("refunds.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None]


class ReconciliationRun(Base):
    """One reconciliation of a time window against PortOne: what it found, and who started it."""

    __tablename__ = "reconciliation_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    started_by: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default="running")  # running | finished | failed
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    checkpoint: Mapped[dict[str, Any] | None]  # where an interrupted run resumes
    payments_checked: Mapped[int] = mapped_column(Integer, default=0)
    counts: Mapped[dict[str, Any] | None]  # per alert kind: found, new, resolved
    error: Mapped[str | None] = mapped_column(Text)


class JobLock(Base):
    """A job that must never run twice at once across processes (`reconcile`): taken with a
    conditional UPDATE, held with a lease its holder renews (services/core/job_lock.py)."""

    __tablename__ = "job_locks"

    name: Mapped[str] = mapped_column(String(120), primary_key=True)  # "reconcile", "refund-desk:<user>"
    holder: Mapped[str | None] = mapped_column(String(200))  # host:pid:token of the process holding it
    acquired_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]


class ExportLinkGrant(Base):
    """One export link made in the dashboard: who made it, in which sign-in, for what, until when.
    The link's signed token names only `id`; a link is honoured once (`used_at` set by a conditional
    UPDATE), never after `expires_at`, and never once its sign-in ended (`revoked_at`)."""

    __tablename__ = "export_link_grants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # random, unguessable
    username: Mapped[str] = mapped_column(String(64))
    session_id: Mapped[str] = mapped_column(String(64), index=True)  # the dashboard sign-in's id
    role: Mapped[str] = mapped_column(String(16))  # the role when issued: a changed role refuses the link
    kind: Mapped[str] = mapped_column(String(16))
    filters: Mapped[dict[str, Any]]
    masked: Mapped[bool] = mapped_column(Boolean)
    language: Mapped[str] = mapped_column(String(8))
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class DashboardSession(Base):
    """One dashboard sign-in, kept on the server so any number of dashboard processes honour it and
    it can be ended from anywhere (sign-out in any tab, an admin, a disabled account). The browser
    holds a random token in an HttpOnly cookie; only its SHA-256 is stored here. `id` is the public
    name of the sign-in (export links are bound to it). `handoff_hash` is a one-time code, valid
    seconds, that the dashboard's cookie route exchanges for the token."""

    __tablename__ = "dashboard_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    handoff_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    handoff_expires_at: Mapped[datetime | None]
    username: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    ended_reason: Mapped[str | None] = mapped_column(String(16))


class NotificationOutbox(Base):
    """One event to tell people about (a high or critical alert, a refund awaiting approval, a failed
    scheduled reconciliation), written in the event's own transaction and sent later by
    services.notifications.dispatch. `event_key` is unique: the same event is queued once. The
    summary holds no personal data; the message links to the dashboard instead."""

    __tablename__ = "notification_outbox"
    __table_args__ = (Index("ix_notification_outbox_pending", "sent_at", "failed_at", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_key: Mapped[str] = mapped_column(String(120), unique=True)  # alert:<id>, approval:<id>, reconcile:<id>
    kind: Mapped[str] = mapped_column(String(40))
    severity: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str] = mapped_column(String(500))
    link_path: Mapped[str] = mapped_column(String(200))  # below DASHBOARD_URL
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    slack_sent_at: Mapped[datetime | None]  # per channel, so a retry never repeats a channel that took it
    email_sent_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]  # every configured channel took it
    failed_at: Mapped[datetime | None]  # given up after the last attempt


class PurgeHorizon(Base):
    """How far back the retention purge (services.system.retention) has deleted a table's rows:
    every row older than `purged_before` may be gone. Written before the rows are deleted and only
    ever moved forward, so a reader who finds a row missing also finds the horizon that explains it.
    Reconciliation reads it to leave undecided what only the deleted rows could tell (no row: never
    purged)."""

    __tablename__ = "purge_horizons"

    table_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    purged_before: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
