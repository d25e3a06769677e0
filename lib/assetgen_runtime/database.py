"""SQLAlchemy engines and Alembic migrations that work the same on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import CTE, bindparam, event, func, pool, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.types import TypeEngine

__all__ = ["array_parameters", "array_rows", "create_engine", "migrate", "run_alembic_env", "session_factory"]


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine; SQLite gets WAL and a busy timeout so several processes can share a file."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    # No pool_pre_ping: it costs a round trip on every checkout (see bench/README.md for its share).
    # A connection that died is invalidated by SQLAlchemy when its statement fails; callers retry
    # (job steps are redelivered), and pool_recycle retires connections before servers or
    # middleboxes drop idle ones. No overflow: under sustained load overflow connections are opened
    # and closed continually (a TLS attempt and authentication each), while queueing for one of
    # the pool's connections costs a few statement times.
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_recycle=1800,
        pool_timeout=10,
        connect_args={"timeout": 10, "command_timeout": 30},
    )


def array_rows(columns: Mapping[str, TypeEngine[Any]], name: str = "rows") -> CTE:
    """Rows sent as one array per column (PostgreSQL): ``SELECT unnest(:c::type[]) AS c, …``.

    Bind each name to a list, one item per row; the lists run in step. This is how many rows'
    writes go to PostgreSQL as one statement (group commit) without a statement per group size.
    """
    arrays = (
        func.unnest(bindparam(column, type_=ARRAY(type_))).label(column) for column, type_ in columns.items()
    )
    return select(*arrays).cte(name)


def array_parameters(rows: Sequence[Mapping[str, Any]], names: Iterable[str]) -> dict[str, list[Any]]:
    """The rows' values as one list per name: the parameters of a statement over ``array_rows``."""
    return {name: [row[name] for row in rows] for name in names}


def session_factory(engine: AsyncEngine) -> async_sessionmaker:  # type: ignore[type-arg]
    """Sessions whose objects stay readable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def migrate(url: str, script_location: str, version_table: str) -> None:
    """Upgrades the database at ``url`` to the newest revision in ``script_location``.

    Alembic's env drives its own event loop, so it runs in a worker thread.
    """
    config = Config()
    config.set_main_option("script_location", script_location)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["version_table"] = version_table
    await asyncio.to_thread(command.upgrade, config, "head")


def run_alembic_env(context: Any, target_metadata: Any) -> None:
    """The body of every service's ``migrations/env.py``: online migrations over an async engine."""
    url = context.config.get_main_option("sqlalchemy.url")
    version_table = context.config.attributes.get("version_table", "alembic_version")

    def do_run(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table=version_table,
            render_as_batch=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        async with engine.connect() as connection:
            await connection.run_sync(do_run)
            await connection.commit()
        await engine.dispose()

    asyncio.run(run())
