"""Alembic environment for the ledger.

``Ledger.upgrade()`` hands over its own connection (``config.attributes["connection"]``), so
migrations run with the ledger's SQLite pragmas and inside its transaction. From the alembic
command line (``alembic.ini`` at the repository root) the URL comes from
``-x url=...`` or ``DEXPILOT_LEDGER_URL``.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import dexpilot.ledger.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from dexpilot.errors import ConfigError

config = context.config
target_metadata = SQLModel.metadata

# Only the alembic command line configures logging; inside the bot the caller owns it.
if config.config_file_name is not None and "connection" not in config.attributes:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or os.environ.get("DEXPILOT_LEDGER_URL")
        or config.get_main_option("sqlalchemy.url")
    )
    if not url:
        raise ConfigError("no ledger URL: pass -x url=... or set DEXPILOT_LEDGER_URL")
    return url


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_offline() -> None:
    from dexpilot.ledger.store import parse_ledger_url

    url = parse_ledger_url(_url())
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.get_backend_name() == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return

    from dexpilot.ledger.store import Ledger

    ledger = Ledger(_url())
    try:
        with ledger.engine.begin() as own_connection:
            _configure(own_connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        ledger.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
