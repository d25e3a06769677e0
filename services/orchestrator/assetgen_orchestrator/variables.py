"""The template variables a generation hands the provider-adapter, from its asset's request fields."""

from __future__ import annotations

import json

from assetgen_orchestrator.models import AssetRow
from assetgen_runtime.jsontext import parse_json_object

__all__ = ["build_variables"]


def build_variables(asset: AssetRow, parent_url: str = "") -> dict[str, object]:
    """The template variables of a generation: every config key, then prompt and image URLs.

    ``image_urls`` defaults to ``[image_url]``; with a parent asset, ``image_url`` is its stored file.
    """
    variables: dict[str, object] = parse_json_object(asset.config_json, "config_json", blank={})
    if asset.prompt:
        variables["prompt"] = asset.prompt
    image_url = parent_url or asset.image_url
    image_urls = json.loads(asset.image_urls_json or "[]")
    if image_url:
        variables["image_url"] = image_url
    if image_urls:
        variables["image_urls"] = image_urls
    elif image_url:
        variables["image_urls"] = [image_url]
    return variables
