"""Reading a results store from a command: open it, read in one session, errors as one click line."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import click

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

T = TypeVar("T")


def read_store(db: str | None, read: Callable[[Session], T], errors: tuple[type[Exception], ...] = ()) -> T:
    """`read(session)` on the store at `db` ($STEPWISE_DB or the default when None), never upgrading
    its schema (a reader must not migrate someone's store). A StoreError, or one of `errors` (the
    reader's own domain errors), becomes a click.ClickException with its message."""
    from sqlalchemy.orm import Session

    from harness.store import StoreError, open_store

    try:
        engine = open_store(db, upgrade_schema=False)
    except StoreError as err:
        raise click.ClickException(str(err)) from None
    try:
        with Session(engine) as s:
            return read(s)
    except (StoreError, *errors) as err:
        raise click.ClickException(str(err)) from None
    finally:
        engine.dispose()
