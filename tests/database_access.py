"""Databases our processes may read but not write (tests only): a PostgreSQL role with some of the
privileges, and an SQLite file or folder this process cannot write (as root: immutable)."""

from __future__ import annotations

import os
import stat
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


@contextmanager
def postgres_role(admin_url: str, *grants: str) -> Iterator[str]:
    """A new login role on `admin_url`'s database given only `grants` (statements with `{role}`
    for its name); yields its URL; the role is dropped afterwards."""
    role = f"ro_{uuid.uuid4().hex[:12]}"
    password = uuid.uuid4().hex
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(f"create role {role} login password '{password}'"))
            connection.execute(text(f"grant usage on schema public to {role}"))
            for grant in grants:
                connection.execute(text(grant.format(role=role)))
        try:
            yield make_url(admin_url).set(username=role, password=password).render_as_string(hide_password=False)
        finally:
            with engine.connect() as connection:
                connection.execute(text(f"drop owned by {role}"))
                connection.execute(text(f"drop role {role}"))
    finally:
        engine.dispose()


@contextmanager
def not_writable(path: Path) -> Iterator[None]:
    """`path` (a file or folder) not writable by this process while inside: chmod for a user,
    the immutable attribute for root (whom permissions do not stop)."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True)  # noqa: S603, S607 - a test's own file
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)  # noqa: S603, S607
    else:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        try:
            yield
        finally:
            path.chmod(mode)
