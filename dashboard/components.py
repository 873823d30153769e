"""Shared UI pieces for pages: the confirm dialog (one idempotency key per confirmed intent),
the keyset-paged table, money / time / status columns, and CSV downloads.

Confirm dialog
    `open_intent(name, payload, fingerprint=...)` when the operator asks for an action: the
    idempotency key is made here and kept in session state with the dialog's open flag (so an
    AppTest can reach the confirm button). Every rerun reuses it. Reopening the SAME unsettled
    intent (an answer may have been lost) keeps the key; a settled or different intent gets a
    new one. `confirm_dialog(name, ...)` renders it while open and calls `on_confirm(intent)`.
Paged table
    `paged_table(name, fetch=..., reset_on=...)`: `fetch(cursor)` returns one page and the next
    cursor; earlier cursors are kept on a stack for "previous". Any change of `reset_on` (the
    filters) starts again from page 1 and clears the selection.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import pandas as pd
import streamlit as st

from dashboard.auth import holding
from dashboard.format import STATUS_COLORS, kst, money, status_label
from dashboard.i18n import t
from services.auth.access import Permission
from services.reporting.export_writer import BOM, Cell, csv_text

# -- confirm dialog and intents -----------------------------------------------------------------


@dataclass
class Intent:
    """One thing the operator means to do, with the idempotency key that makes it happen once."""

    key: str
    fingerprint: str
    payload: dict[str, Any] = field(default_factory=dict)
    settled: bool = False  # a definitive answer came back: the next opening is a new intent


def _intent_key(name: str) -> str:
    return f"{name}.intent"


def _open_key(name: str) -> str:
    return f"{name}.dialog_open"


def open_intent(name: str, payload: dict[str, Any], *, fingerprint: str) -> Intent:
    """Open the confirm dialog `name` for this intent (see the module docstring for the key rule)."""
    current: Intent | None = st.session_state.get(_intent_key(name))
    if current is None or current.settled or current.fingerprint != fingerprint:
        current = Intent(key=uuid.uuid4().hex, fingerprint=fingerprint, payload=dict(payload))
    else:
        current.payload = dict(payload)
    st.session_state[_intent_key(name)] = current
    st.session_state[_open_key(name)] = True
    return current


def current_intent(name: str) -> Intent | None:
    return st.session_state.get(_intent_key(name))


def settle_intent(name: str) -> None:
    intent = current_intent(name)
    if intent is not None:
        intent.settled = True


def dialog_is_open(name: str) -> bool:
    return bool(st.session_state.get(_open_key(name)))


def close_dialog(name: str) -> None:
    st.session_state[_open_key(name)] = False


def confirm_dialog(
    name: str,
    *,
    title: str,
    body: Callable[[Intent], None],
    on_confirm: Callable[[Intent], None],
    permission: Permission,
    confirm_label: str | None = None,
    cancel_label: str | None = None,
    width: Literal["small", "medium", "large"] = "medium",
) -> None:
    """Render the dialog while it is open. Confirm calls `on_confirm(intent)`, then closes it
    (on_confirm may keep it open by calling `open_intent` again); cancel just closes it. Only while
    the signed-in actor still holds `permission`: otherwise it closes and the whole page runs again."""
    intent = current_intent(name)
    if not dialog_is_open(name) or intent is None:
        return

    @st.dialog(title, width=width, dismissible=False)
    def _dialog() -> None:
        if holding(permission) is None:
            close_dialog(name)
            st.rerun(scope="app")
        body(intent)
        left, right = st.columns(2)
        confirmed = left.button(
            confirm_label or t("components.confirm"), key=f"{name}.confirm", type="primary", width="stretch"
        )
        cancelled = right.button(cancel_label or t("components.cancel"), key=f"{name}.cancel", width="stretch")
        if confirmed:
            close_dialog(name)
            on_confirm(intent)
            st.rerun()
        if cancelled:
            close_dialog(name)
            st.rerun()

    _dialog()


# -- money, time and status columns -------------------------------------------------------------


def money_text(amount: Decimal | None, currency: str | None) -> str:
    """₩50,000 / $38.50 (exact: formatted from the Decimal, never through a float)."""
    if amount is None or not currency:
        return "—"
    return money(amount, currency)


def time_text(moment: datetime | None) -> str:
    return kst(moment)


def money_column(label: str, *, help: str | None = None) -> Any:
    """A money column: text made by `money_text`, right-aligned like numbers."""
    return st.column_config.TextColumn(label, help=help, alignment="right")


def time_column(label: str, *, help: str | None = None) -> Any:
    return st.column_config.TextColumn(label, help=help)


def status_column(label: str, states: Sequence[str]) -> Any:
    """Coloured status labels with words; cells hold a one-item list, e.g. ["paid"]."""
    colors = [STATUS_COLORS.get(state, "gray") for state in states]
    return st.column_config.MultiselectColumn(label, options=list(states), color=colors, format_func=status_label)


# -- the paged table ----------------------------------------------------------------------------

SelectionMode = Literal["single-row", "multi-row", "single-cell"]


@dataclass(frozen=True)
class PagedResult:
    frame: pd.DataFrame
    selected: list[int]  # positions in `frame`
    page: int  # 1-based
    has_next: bool
    cells: list[tuple[int, str]] = field(default_factory=list)  # (position, column) clicked, in cell mode


def _stack_key(name: str) -> str:
    return f"{name}.cursors"


def reset_pages(name: str) -> None:
    st.session_state[_stack_key(name)] = [None]


def _go_next(name: str) -> None:
    following = st.session_state.get(f"{name}.next_cursor")
    if following:
        st.session_state[_stack_key(name)].append(following)


def _go_previous(name: str) -> None:
    stack = st.session_state[_stack_key(name)]
    if len(stack) > 1:
        stack.pop()


def paged_table(
    name: str,
    *,
    fetch: Callable[[str | None], tuple[pd.DataFrame, str | None]],
    reset_on: Hashable,
    column_config: dict[str, Any] | None = None,
    selection_mode: SelectionMode | list[SelectionMode] | None = None,
    empty: Callable[[], None] | None = None,
    generation: int = 0,
) -> PagedResult:
    """One page from `fetch`, with previous / next buttons and optional row (or cell) selection.
    A new `generation` clears the selection and keeps the page (after a row's action was taken)."""
    if st.session_state.get(f"{name}.reset_on") != reset_on or _stack_key(name) not in st.session_state:
        st.session_state[f"{name}.reset_on"] = reset_on
        reset_pages(name)
    stack: list[str | None] = st.session_state[_stack_key(name)]
    frame, next_cursor = fetch(stack[-1])
    st.session_state[f"{name}.next_cursor"] = next_cursor
    page = len(stack)
    if frame.empty and page == 1:
        if empty is not None:
            empty()
        return PagedResult(frame=frame, selected=[], page=1, has_next=False)
    # The key changes with the page and the filters, so a selection never outlives its rows.
    table_key = f"{name}.{hashlib.sha256(repr(reset_on).encode()).hexdigest()[:10]}.{page}"
    if generation:
        table_key += f".{generation}"
    options: dict[str, Any] = {"hide_index": True, "column_config": column_config, "width": "stretch"}
    selected: list[int] = []
    cells: list[tuple[int, str]] = []
    if selection_mode is not None:
        event = st.dataframe(frame, key=table_key, on_select="rerun", selection_mode=selection_mode, **options)
        selected = [int(i) for i in event.selection.rows]
        cells = [(int(row), str(column)) for row, column in event.selection.get("cells", [])]
    else:
        st.dataframe(frame, key=table_key, **options)
    previous, where, following = st.columns([1, 2, 1])
    previous.button(
        t("components.previous_page"),
        key=f"{name}.previous",
        disabled=page == 1,
        on_click=_go_previous,
        args=(name,),
        width="stretch",
    )
    where.caption(t("components.page", page=page))
    following.button(
        t("components.next_page"),
        key=f"{name}.next",
        disabled=next_cursor is None,
        on_click=_go_next,
        args=(name,),
        width="stretch",
    )
    return PagedResult(frame=frame, selected=selected, page=page, has_next=next_cursor is not None, cells=cells)


# -- files ----------------------------------------------------------------------------------------


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """CSV for Excel through the exports' one writer (services.reporting.exports): UTF-8 with a BOM, so Korean
    text opens correctly, CRLF, and every text cell Excel would read as a formula neutralised."""
    header: list[Cell] = [str(name) for name in frame.columns]
    rows = [header] + [[_cell(value) for value in row] for row in frame.itertuples(index=False, name=None)]
    return (BOM + csv_text(rows)).encode("utf-8")


def _cell(value: object) -> Cell:
    """A table value as an export cell: numbers stay typed, anything else is text (neutralised)."""
    if value is None or (isinstance(value, float) and value != value):  # NaN: an empty cell
        return None
    if isinstance(value, bool | int | Decimal):
        return value
    if hasattr(value, "item") and isinstance(value.item(), int):  # numpy integers
        return int(value.item())
    return str(value)
