"""Project scope of a call: a project's caller reaches only its project's boxes and their assets.

The gateway names the caller's project in ``x-assetgen-project`` metadata (none for an admin). Out
of scope answers exactly as missing does — NOT_FOUND — so another project's ids reveal nothing.
"""

from __future__ import annotations

from assetgen_orchestrator.models import AssetRow, BoxRow
from assetgen_orchestrator.store import AssetStore
from assetgen_runtime.errors import NotFound

__all__ = ["PROJECT_METADATA", "ProjectScope", "caller_project"]

PROJECT_METADATA = "x-assetgen-project"


def caller_project(context: object) -> str:
    """The project the call is confined to; '' when it reaches every project."""
    invocation = getattr(context, "invocation_metadata", None)
    for key, value in (invocation() if invocation is not None else None) or ():
        if key == PROJECT_METADATA:
            return str(value)
    return ""


class ProjectScope:
    """Reads boxes and assets as the caller may see them."""

    def __init__(self, store: AssetStore) -> None:
        self._store = store

    async def box(self, box_id: str, context: object) -> BoxRow:
        """The box, or NotFound if it is missing or of another project than the caller's."""
        box = await self._store.get_box(box_id)
        project = caller_project(context)
        if project and box.project_id != project:
            raise NotFound(f"box {box_id!r} not found")
        return box

    async def check_box(self, box_id: str, context: object) -> None:
        """NotFound unless the box exists in the caller's scope (a recently seen one, for admins)."""
        if caller_project(context):
            await self.box(box_id, context)
        else:
            await self._store.check_box(box_id)

    async def asset(self, asset_id: str, context: object) -> AssetRow:
        """The asset, or NotFound if it is missing or in another project's box."""
        asset = await self._store.get_asset(asset_id)
        await self.check_asset(asset, context)
        return asset

    async def check_asset(self, asset: AssetRow, context: object) -> None:
        """NotFound if ``asset`` is in another project's box than the caller's."""
        project = caller_project(context)
        if project and (await self._store.get_box(asset.box_id)).project_id != project:
            raise NotFound(f"asset {asset.id!r} not found")
