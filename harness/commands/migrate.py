"""`stepwise migrate`: bring a results store to this code's schema version, on purpose, and repair it."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("migrate")
@click.option("--db", default=None, help="SQLAlchemy URL of the store [$STEPWISE_DB or sqlite:///stepwise.db].")
def migrate(db: str | None) -> None:
    """Apply the store's missing schema migrations (each in its own transaction, so a failure
    leaves the previous version intact). Commands that write (run, merge) migrate on their own;
    commands that only read (curve, curate, submit) refuse an older store instead of changing it.

    Then check that every table and column the schema promises is there, and repair what can be
    repaired without inventing data: a missing table that no row refers to is recreated (empty), a
    missing column that may be empty or has a default is added; anything else is refused, named.
    A schema_version row holding garbage is set to the one version the tables fit, or refused.
    """
    from harness.store import StoreError, make_engine, mask_url, resolve_url
    from harness.store.engine import read_only_path
    from harness.store.integrity import check_schema, infer_version, repair, set_version
    from harness.store.migrations import SCHEMA_VERSION, MalformedVersionError, stored_version, upgrade

    url = resolve_url(db)
    if _missing_sqlite_file(url):  # connecting would create an empty file: nothing to migrate there
        raise click.ClickException(f"{mask_url(url)}: no such file; nothing to migrate")
    try:
        engine = make_engine(db)
    except StoreError as err:
        raise click.ClickException(str(err)) from None
    where = mask_url(url)
    notes: list[str] = []
    try:
        if read_only_path(engine) is not None:
            raise click.ClickException(f"store is read-only: {read_only_path(engine)}; nothing was changed")
        with engine.connect() as conn:
            try:
                before = stored_version(conn)
            except MalformedVersionError as err:
                guessed = infer_version(conn)
                if guessed is None:
                    raise click.ClickException(f"{err}; its tables fit no single schema version either: restore the "
                                               "store from a backup") from None
                before = guessed
                notes.append(f"{err.args[0].split(': ', 1)[-1].split(';')[0]}: set to {guessed}, the version its "
                             "tables fit")
        if before == 0:
            raise click.ClickException(f"{where} holds no stepwise store; nothing to migrate "
                                       "(check --db / $STEPWISE_DB)")
        if notes:
            with engine.begin() as conn:
                set_version(conn, before)
        after = upgrade(engine)
        notes += repair(engine)
        with engine.connect() as conn:
            check_schema(conn, after)
    except StoreError as err:
        raise click.ClickException(" ".join(str(err).split())) from None
    finally:
        engine.dispose()
    for note in notes:
        click.echo(f"{where}: {note}")
    if after == before:
        click.echo(f"{where}: already at schema version {after}" + ("; repaired" if notes else "; every table and "
                                                                     "column it promises is there"))
    else:
        click.echo(f"{where}: schema version {before} -> {after} (this code's is {SCHEMA_VERSION})")


def _missing_sqlite_file(url: str) -> bool:
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # a URL that does not parse: make_engine reports it
        return False
    return (parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
            and not Path(parsed.database).exists())
