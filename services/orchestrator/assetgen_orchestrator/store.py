"""Data access for boxes and assets; every asset update is a compare-and-set on its version."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker

from assetgen_orchestrator.models import Asset, AssetTransition, Box, Status, utcnow
from assetgen_runtime.errors import InvalidArgument, NotFound

__all__ = ["AssetStore", "Page"]

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50


@dataclasses.dataclass
class Page:
    """One page of a keyset-paginated listing."""

    items: list[Any]
    next_cursor: str


def _page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("page_size must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


class AssetStore:
    """Reads and writes the orchestrator's tables through short transactions."""

    def __init__(self, sessions: async_sessionmaker) -> None:  # type: ignore[type-arg]
        self._sessions = sessions

    async def create_box(self, box_id: str, name: str) -> Box:
        """Inserts a box."""
        box = Box(id=box_id, name=name, created_at=utcnow(), updated_at=utcnow())
        async with self._sessions() as session, session.begin():
            session.add(box)
        return box

    async def get_box(self, box_id: str) -> Box:
        """The box, or NotFound."""
        async with self._sessions() as session:
            box = await session.get(Box, box_id)
        if box is None:
            raise NotFound(f"box {box_id!r} not found")
        return box

    async def list_boxes(self, page_size: int, cursor: str) -> Page:
        """Boxes newest first; ids sort by creation time, so the cursor is the last id seen."""
        size = _page_size(page_size)
        query = select(Box).order_by(Box.id.desc()).limit(size + 1)
        if cursor:
            query = query.where(Box.id < cursor)
        async with self._sessions() as session:
            rows = list((await session.scalars(query)).all())
        return _page(rows, size)

    async def rename_box(self, box_id: str, name: str) -> Box:
        """Renames a box (NotFound if missing)."""
        async with self._sessions() as session, session.begin():
            box = await session.get(Box, box_id)
            if box is None:
                raise NotFound(f"box {box_id!r} not found")
            box.name = name
            box.updated_at = utcnow()
        return box

    async def delete_box(self, box_id: str) -> None:
        """Deletes a box with its assets and their history."""
        async with self._sessions() as session, session.begin():
            asset_ids = select(Asset.id).where(Asset.box_id == box_id)
            await session.execute(delete(AssetTransition).where(AssetTransition.asset_id.in_(asset_ids)))
            await session.execute(delete(Asset).where(Asset.box_id == box_id))
            await session.execute(delete(Box).where(Box.id == box_id))

    async def box_assets(self, box_id: str) -> list[Asset]:
        """Every asset of a box (for deleting it)."""
        async with self._sessions() as session:
            return list((await session.scalars(select(Asset).where(Asset.box_id == box_id))).all())

    async def delete_asset(self, asset_id: str) -> None:
        """Deletes an asset and its history."""
        async with self._sessions() as session, session.begin():
            await session.execute(delete(AssetTransition).where(AssetTransition.asset_id == asset_id))
            await session.execute(delete(Asset).where(Asset.id == asset_id))

    async def find_asset(self, asset_id: str) -> Asset | None:
        """The asset, or None."""
        async with self._sessions() as session:
            return await session.get(Asset, asset_id)

    async def get_asset(self, asset_id: str) -> Asset:
        """The asset, or NotFound."""
        asset = await self.find_asset(asset_id)
        if asset is None:
            raise NotFound(f"asset {asset_id!r} not found")
        return asset

    async def list_assets(
        self,
        box_id: str,
        page_size: int,
        cursor: str,
        *,
        status: str = "",
        source_type: str = "",
        model: str = "",
    ) -> Page:
        """A box's assets newest first, optionally filtered."""
        size = _page_size(page_size)
        query = select(Asset).where(Asset.box_id == box_id).order_by(Asset.id.desc()).limit(size + 1)
        if cursor:
            query = query.where(Asset.id < cursor)
        if status:
            query = query.where(Asset.status == status)
        if source_type:
            query = query.where(Asset.source_type == source_type)
        if model:
            query = query.where(Asset.model == model)
        async with self._sessions() as session:
            rows = list((await session.scalars(query)).all())
        return _page(rows, size)

    async def find_by_idempotency_key(self, box_id: str, key: str) -> Asset | None:
        """The asset a generate with this Idempotency-Key created in this box, if any."""
        query = select(Asset).where(Asset.box_id == box_id, Asset.idempotency_key == key)
        async with self._sessions() as session:
            return (await session.scalars(query)).first()

    async def insert_asset(self, asset: Asset, message: str) -> Asset:
        """Inserts a new asset with its first history entry.

        A concurrent generate with the same Idempotency-Key loses the race on the unique constraint
        and gets the winner's asset.
        """
        now = utcnow()
        asset.created_at = asset.updated_at = now
        async with self._sessions() as session:
            try:
                async with session.begin():
                    session.add(asset)
                    await session.flush()
                    session.add(_transition(asset, "", message, now))
            except IntegrityError:
                if asset.idempotency_key:
                    existing = await self.find_by_idempotency_key(asset.box_id, asset.idempotency_key)
                    if existing is not None:
                        return existing
                raise
        return asset

    async def update_asset(self, asset: Asset, *, message: str = "", **changes: Any) -> bool:
        """Applies ``changes`` if nobody changed the asset since it was read; False if someone did.

        On success ``asset`` (a detached copy) is updated in place and, when the status or step moved,
        a history entry is written in the same transaction.
        """
        now = utcnow()
        changes = {**changes, "version": asset.version + 1, "updated_at": now}
        moved = ("status" in changes and changes["status"] != asset.status) or (
            "step" in changes and changes["step"] != asset.step
        )
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                update(Asset)
                .where(Asset.id == asset.id, Asset.version == asset.version)
                .values(**changes)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return False
            if moved:
                previous = asset.status
                for key, value in changes.items():
                    setattr(asset, key, value)
                session.add(_transition(asset, previous, message, now))
                return True
        for key, value in changes.items():
            setattr(asset, key, value)
        return True

    async def status_counts(self) -> dict[str, int]:
        """Number of assets in each status."""
        query = select(Asset.status, func.count()).group_by(Asset.status)
        async with self._sessions() as session:
            return {str(status): int(count) for status, count in (await session.execute(query)).all()}

    async def oldest_in_flight(self) -> dict[str, float]:
        """Age in seconds of the oldest non-terminal asset of each model."""
        terminal = [Status.COMPLETED.value, Status.FAILED.value, Status.CANCELED.value]
        query = (
            select(Asset.model, func.min(Asset.created_at))
            .where(Asset.status.not_in(terminal))
            .group_by(Asset.model)
        )
        now = utcnow()
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
        return {
            str(model): (
                now - (oldest if oldest.tzinfo else oldest.replace(tzinfo=now.tzinfo))
            ).total_seconds()
            for model, oldest in rows
            if oldest is not None
        }

    async def history(self, asset_id: str) -> Sequence[AssetTransition]:
        """Every transition of an asset, oldest first."""
        query = (
            select(AssetTransition).where(AssetTransition.asset_id == asset_id).order_by(AssetTransition.id)
        )
        async with self._sessions() as session:
            return list((await session.scalars(query)).all())


def _transition(asset: Asset, previous_status: str, message: str, at: Any) -> AssetTransition:
    return AssetTransition(
        asset_id=asset.id,
        attempt=asset.attempt,
        from_status=previous_status,
        to_status=asset.status,
        step=asset.step,
        message=message,
        at=at,
    )


def _page(rows: list[Any], size: int) -> Page:
    if len(rows) > size:
        return Page(items=rows[:size], next_cursor=rows[size - 1].id)
    return Page(items=rows, next_cursor="")
