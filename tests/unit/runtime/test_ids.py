"""Ids: prefixed, 26 base32 characters, strictly increasing within a process."""

from __future__ import annotations

from assetgen_runtime.ids import new_id


def test_ids_made_in_a_burst_sort_in_the_order_they_were_made() -> None:
    ids = [new_id("ast") for _ in range(2000)]  # many share a millisecond
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_an_id_is_its_prefix_and_26_base32_characters() -> None:
    prefix, _, body = new_id("box").partition("_")
    assert prefix == "box" and len(body) == 26
    assert set(body) <= set("0123456789abcdefghjkmnpqrstvwxyz")
