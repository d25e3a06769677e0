"""The settings base: the common fields are declared once and read, listed and overridden like any other."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from assetgen_gateway.settings import GatewaySettings
from assetgen_orchestrator.settings import OrchestratorSettings
from assetgen_provider_adapter.settings import ProviderAdapterSettings
from assetgen_runtime.settings import ServiceSettings, SettingsError, describe, env, load
from assetgen_storage.settings import StorageSettings

COMMON = [
    "ASSETGEN_SHUTDOWN_GRACE_SECONDS",
    "ASSETGEN_METRICS_PORT",
    "ASSETGEN_LOG_LEVEL",
    "ASSETGEN_EVENT_LOOP",
]


@dataclass(frozen=True, kw_only=True)
class _Example(ServiceSettings):
    port: int = env("EXAMPLE_PORT", "A port.", 1)
    name: str = env("EXAMPLE_NAME", "A required name.")


@pytest.mark.parametrize(
    "settings_class", [GatewaySettings, OrchestratorSettings, ProviderAdapterSettings, StorageSettings]
)
def test_every_service_inherits_the_common_fields_and_declares_none_itself(settings_class: type) -> None:
    assert issubclass(settings_class, ServiceSettings)
    own = set(vars(settings_class).get("__annotations__", {}))
    assert own.isdisjoint(field.name for field in dataclasses.fields(ServiceSettings))
    assert [row[0] for row in describe(settings_class)][-len(COMMON) :] == COMMON


def test_describe_lists_own_fields_first_then_the_common_ones() -> None:
    assert describe(_Example) == [
        ("EXAMPLE_PORT", "1", "A port."),
        ("EXAMPLE_NAME", "(required)", "A required name."),
        ("ASSETGEN_SHUTDOWN_GRACE_SECONDS", "10.0", "Time in-flight calls get to finish on SIGTERM."),
        ("ASSETGEN_METRICS_PORT", "0", "Port serving Prometheus metrics at /metrics (0: not served)."),
        ("ASSETGEN_LOG_LEVEL", "'INFO'", "Logging level."),
        ("ASSETGEN_EVENT_LOOP", "'uvloop'", "Event loop: uvloop, or asyncio for debugging."),
    ]


def test_common_fields_are_read_from_the_environment_and_overridable() -> None:
    settings = load(
        _Example,
        {"EXAMPLE_NAME": "x", "ASSETGEN_METRICS_PORT": "9100", "ASSETGEN_SHUTDOWN_GRACE_SECONDS": "2.5"},
        log_level="DEBUG",
    )
    assert (settings.name, settings.port) == ("x", 1)
    assert (settings.metrics_port, settings.shutdown_grace_seconds) == (9100, 2.5)
    assert (settings.log_level, settings.event_loop) == ("DEBUG", "uvloop")


def test_a_required_own_field_after_the_defaulted_common_ones_is_still_required() -> None:
    with pytest.raises(SettingsError, match="EXAMPLE_NAME is required"):
        load(_Example, {})
