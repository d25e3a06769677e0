"""The plain row types hold exactly their tables' columns, with the same defaults."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import Table

from assetgen_orchestrator.models import (
    ASSET_COLUMNS,
    AssetRow,
    BoxRow,
    TransitionRow,
    assets_table,
    boxes_table,
    transitions_table,
)


@pytest.mark.parametrize(
    ("row", "table"),
    [(AssetRow, assets_table), (BoxRow, boxes_table), (TransitionRow, transitions_table)],
)
def test_a_row_type_has_one_field_per_column(row: type, table: Table) -> None:
    assert {field.name for field in dataclasses.fields(row)} == {column.key for column in table.columns}


def test_an_asset_rows_defaults_are_its_columns_scalar_defaults() -> None:
    asset = AssetRow(id="ast_1", box_id="box_1", status="PENDING", step="queued", source_type="GENERATED")
    for column in assets_table.columns:
        default = column.default
        if default is not None and default.is_scalar:
            assert getattr(asset, column.key) == default.arg, column.key
    assert asset.submitted_at is None and asset.created_at.tzinfo is not None
    assert list(asset.values()) == list(ASSET_COLUMNS)
