"""`stepwise migrate`: bring a results store to this code's schema version, on purpose."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("migrate")
@click.option("--db", default=None, help="SQLAlchemy URL of the store [$STEPWISE_DB or sqlite:///stepwise.db].")
def migrate(db: str | None) -> None:
    """Apply the store's missing schema migrations (each in its own transaction, so a failure
    leaves the previous version intact). Commands that write (run, merge) migrate on their own;
    commands that only read (curve, curate, submit) refuse an older store instead of changing it.
    """
    from harness.store import StoreError, make_engine, mask_url, resolve_url
    from harness.store.migrations import SCHEMA_VERSION, stored_version, upgrade

    url = resolve_url(db)
    if _missing_sqlite_file(url):  # connecting would create an empty file: nothing to migrate there
        raise click.ClickException(f"{mask_url(url)}: no such file; nothing to migrate")
    try:
        engine = make_engine(db)
    except StoreError as err:
        raise click.ClickException(str(err)) from None
    try:
        with engine.connect() as conn:
            before = stored_version(conn)
        if before == 0:
            raise click.ClickException(f"{mask_url(engine.url)} holds no stepwise store; nothing to migrate "
                                       "(check --db / $STEPWISE_DB)")
        after = upgrade(engine)
    except StoreError as err:
        raise click.ClickException(str(err)) from None
    finally:
        engine.dispose()
    where = mask_url(engine.url)
    if after == before:
        click.echo(f"{where}: already at schema version {after}")
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
