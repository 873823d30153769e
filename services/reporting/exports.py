"""CSV exports of payments, refunds, alerts and the sales summary, streamed in chunks: what the
dashboard and the API call (`prepare`, then `stream`, `build_file` or `estimate_rows`).

The file is made for Excel and safe in it (services/reporting/export_writer.py: byte order mark,
CRLF, formula cells neutralised, money as exact plain numbers); each export's rows come from one
query (services/reporting/export_queries.py) and carry the columns of
services/reporting/export_columns.py, in Korean or English, times in KST.

Personal data (buyer name, e-mail, phone) is masked unless the actor asks for it and holds
`EXPORT_UNMASKED`. Every export, finished or abandoned, leaves an audit entry with who, what,
the filters, the row count and whether it was masked.

Small exports are built in memory for the dashboard's download button; large ones are streamed by
the API behind a short-lived, single-use signed link (services/reporting/export_links.py), so the dashboard
process never holds them.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from contextlib import closing
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.audit import trail as audit
from services.auth.access import Actor, Permission, require
from services.core.errors import InvalidRequest
from services.reporting.export_columns import LANGUAGES, ExportKind, header_line
from services.reporting.export_queries import ROW_EXPORTS, ExportFilters, summary_cells
from services.reporting.export_writer import BOM, csv_chunk, csv_text
from services.runtime import Runtime

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "ExportFile",
    "ExportFilters",
    "ExportKind",
    "ExportRequest",
    "build_file",
    "estimate_rows",
    "prepare",
    "stream",
]

DEFAULT_CHUNK_ROWS = 1000


# -- requests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportRequest:
    """A checked export: the actor may run it, with personal data masked or not."""

    kind: ExportKind
    filters: ExportFilters
    actor: Actor
    masked: bool
    language: str = "ko"

    @property
    def file_name(self) -> str:
        return f"chekar-{self.kind}-{self.filters.start:%Y%m%d}-{self.filters.end:%Y%m%d}.csv"


def prepare(
    *,
    actor: Actor,
    kind: ExportKind | str,
    filters: ExportFilters,
    include_personal_data: bool = False,
    language: str = "ko",
) -> ExportRequest:
    """Check who may export what. Personal data only on request, and only with EXPORT_UNMASKED."""
    require(actor, Permission.EXPORT_UNMASKED if include_personal_data else Permission.EXPORT_MASKED)
    try:
        export_kind = ExportKind(kind)
    except ValueError:
        raise InvalidRequest(f"unknown export {kind!r}") from None
    return ExportRequest(
        kind=export_kind,
        filters=filters,
        actor=actor,
        masked=not include_personal_data,
        language=language if language in LANGUAGES else "ko",
    )


# -- producing the file ---------------------------------------------------------------------


def estimate_rows(rt: Runtime, request: ExportRequest) -> int:
    """How many data rows the export would have now (one COUNT query; the summary is computed)."""
    if request.kind == ExportKind.SUMMARY:
        return len(summary_cells(rt, request.actor, request.filters))
    query = ROW_EXPORTS[request.kind].query
    with rt.db.read() as session:
        counted = query(request.filters, rt.db.engine.dialect.name).order_by(None).subquery()
        return int(session.scalar(select(func.count()).select_from(counted)) or 0)


def _csv_chunks(session: Session, request: ExportRequest, chunk_rows: int) -> Generator[tuple[int, str], None, None]:
    """(rows, CSV text) per `chunk_rows` rows."""
    export = ROW_EXPORTS[request.kind]
    connection = session.connection()  # Core rows, no ORM: the same transaction, a fraction of the cost
    statement = export.query(request.filters, connection.dialect.name)
    result = connection.execution_options(yield_per=chunk_rows).execute(statement)
    cells = export.row_cells(request.masked)
    try:
        for partition in result.partitions():
            yield len(partition), csv_chunk(map(cells, partition), export.text_cells)
    finally:
        result.close()  # also when the reader stops early: frees PostgreSQL's server-side cursor


def stream(
    rt: Runtime, request: ExportRequest, *, chunk_rows: int = DEFAULT_CHUNK_ROWS, via: str = "dashboard"
) -> Iterator[str]:
    """The CSV as text chunks: BOM and header first, then one chunk per `chunk_rows` rows.

    Rows are read with `yield_per` (a server-side cursor on PostgreSQL), so memory stays at one
    chunk whatever the size. The audit entry is written when the stream ends, finished or not.
    """
    return _stream(rt, request, chunk_rows=chunk_rows, via=via, counted=[0])


def _stream(rt: Runtime, request: ExportRequest, *, chunk_rows: int, via: str, counted: list[int]) -> Iterator[str]:
    if chunk_rows < 1:
        raise InvalidRequest("chunk_rows must be at least 1")
    completed = False
    try:
        yield BOM + header_line(request.kind, request.language)
        if request.kind == ExportKind.SUMMARY:
            summary = summary_cells(rt, request.actor, request.filters)
            for at in range(0, len(summary), chunk_rows):
                part = summary[at : at + chunk_rows]
                counted[0] += len(part)
                yield csv_text(part)
        else:
            with rt.db.read() as session, closing(_csv_chunks(session, request, chunk_rows)) as chunks:
                for rows, text in chunks:
                    counted[0] += rows
                    yield text
        completed = True
    finally:
        _audit_export(rt, request, rows=counted[0], completed=completed, via=via)


@dataclass(frozen=True)
class ExportFile:
    data: bytes
    rows: int
    file_name: str


def build_file(rt: Runtime, request: ExportRequest, *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> ExportFile:
    """The whole file in memory, for the dashboard's download button (small exports only)."""
    counted = [0]
    text = "".join(_stream(rt, request, chunk_rows=chunk_rows, via="dashboard", counted=counted))
    return ExportFile(data=text.encode("utf-8"), rows=counted[0], file_name=request.file_name)


def _audit_export(rt: Runtime, request: ExportRequest, *, rows: int, completed: bool, via: str) -> None:
    with rt.db.write() as session:
        audit.record(
            session,
            actor=request.actor.username,
            action="export.csv",
            target=str(request.kind),
            filters=request.filters.to_dict(),
            rows=rows,
            masked=request.masked,
            completed=completed,
            via=via,
            role=str(request.actor.role),
        )
