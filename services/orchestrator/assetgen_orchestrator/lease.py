"""A named lease in the asset database: at most one replica holds it at a time, until it expires.

Work that one replica must do for all of them (the reconciler) is done by the holder of a lease.
The holder renews it well within its time to live; a replica that dies stops renewing, and another
takes the lease over once it has expired. Taking and renewing are single compare-and-set
statements on the lease's row, so two replicas can never both believe they hold it — as long as
their clocks agree to well within the time to live, which is why it is minutes, not seconds.

Why the database and not a NATS KV key: the reconciler's work is reading and writing that database,
so a replica that cannot reach it has nothing to do anyway, and a lease there needs no other moving
part (a KV bucket of its own, with replicas to configure) and is the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import insert, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from assetgen_orchestrator.models import leases_table, utcnow

__all__ = ["Lease"]


class Lease:
    """The lease ``name``, as seen by the replica ``holder``."""

    def __init__(self, engine: AsyncEngine, name: str, holder: str, *, ttl: float) -> None:
        self._engine = engine
        self.name = name
        self.holder = holder
        self._ttl = dt.timedelta(seconds=ttl)

    async def acquire(self) -> bool:
        """Takes the lease (or renews it, if held) for another time to live; False if another holds it."""
        now = utcnow()
        expires = now + self._ttl
        take = (
            update(leases_table)
            .where(leases_table.c.name == self.name)
            .where(or_(leases_table.c.holder == self.holder, leases_table.c.expires_at < now))
            .values(holder=self.holder, expires_at=expires)
        )
        async with self._engine.begin() as connection:
            if (await connection.execute(take)).rowcount == 1:
                return True
        try:
            async with self._engine.begin() as connection:
                await connection.execute(
                    insert(leases_table).values(name=self.name, holder=self.holder, expires_at=expires)
                )
        except IntegrityError:
            return False  # the row exists: someone holds the lease and it has not expired
        return True

    async def release(self) -> None:
        """Gives the lease up (on shutdown), so another replica need not wait for it to expire."""
        give_up = (
            update(leases_table)
            .where(leases_table.c.name == self.name, leases_table.c.holder == self.holder)
            .values(expires_at=utcnow() - dt.timedelta(seconds=1))
        )
        async with self._engine.begin() as connection:
            await connection.execute(give_up)
