"""Rendered overlays, made once per session; every deploy test reads them."""

from __future__ import annotations

import pytest
from deploy_manifests import DEPLOY, NO_RENDERER, OVERLAYS, Rendered, render, renderer

_cache: dict[str, Rendered] = {}


@pytest.fixture(scope="session")
def render_overlay():
    """Returns the rendered objects of ``deploy/overlays/<name>`` (``"base"`` for deploy/base)."""
    if renderer() is None:
        pytest.skip(NO_RENDERER)

    def _render(name: str) -> Rendered:
        if name not in _cache:
            path = DEPLOY / "base" if name == "base" else DEPLOY / "overlays" / name
            _cache[name] = Rendered(name, render(path))
        return _cache[name]

    return _render


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest, render_overlay) -> Rendered:
    """Each overlay in turn (dev, production, ...)."""
    return render_overlay(request.param)
