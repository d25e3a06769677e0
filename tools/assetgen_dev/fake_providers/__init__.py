"""Fake provider servers, one module per API family, following the shapes documented in
``/work/shared/reference/provider-apis.md``; used by the per-preset integration tests.

``FakeKieJobs`` (Kie.ai's jobs API) is also `make run`'s demo provider and the bench's provider,
with their timing and results plugged in (``kie_jobs``, ``media``).
"""

from assetgen_dev.fake_providers.base import FAIL_TEXT, FILTER_TEXT, FakeProvider, FakeTask
from assetgen_dev.fake_providers.dashscope import DASHSCOPE_FILTER_TEXT, DASHSCOPE_SYNC_TEXT, FakeDashScope
from assetgen_dev.fake_providers.fal import FakeFal
from assetgen_dev.fake_providers.google_veo import FakeGoogleVeo
from assetgen_dev.fake_providers.kie import FakeKieFluxKontext, FakeKieVeo
from assetgen_dev.fake_providers.kie_jobs import FakeKieJobs
from assetgen_dev.fake_providers.kling import KLING_FILTER_TEXT, FakeKling
from assetgen_dev.fake_providers.luma import FakeLuma
from assetgen_dev.fake_providers.minimax import MINIMAX_FILTER_TEXT, FakeMiniMax
from assetgen_dev.fake_providers.openai import FakeOpenAIImages, FakeOpenAIVideos
from assetgen_dev.fake_providers.openrouter import OPENROUTER_FILTER_TEXT, FakeOpenRouterVideo
from assetgen_dev.fake_providers.replicate import FakeReplicate
from assetgen_dev.fake_providers.runway import RUNWAY_VERSION, FakeRunway
from assetgen_dev.fake_providers.seedance import SEEDANCE_FILTER_TEXT, FakeSeedance
from assetgen_dev.fake_providers.stability import FakeStabilityImage, FakeStabilityVideo

__all__ = [
    "DASHSCOPE_FILTER_TEXT",
    "DASHSCOPE_SYNC_TEXT",
    "FAIL_TEXT",
    "FILTER_TEXT",
    "KLING_FILTER_TEXT",
    "MINIMAX_FILTER_TEXT",
    "OPENROUTER_FILTER_TEXT",
    "RUNWAY_VERSION",
    "SEEDANCE_FILTER_TEXT",
    "FakeDashScope",
    "FakeFal",
    "FakeGoogleVeo",
    "FakeKieFluxKontext",
    "FakeKieJobs",
    "FakeKieVeo",
    "FakeKling",
    "FakeLuma",
    "FakeMiniMax",
    "FakeOpenAIImages",
    "FakeOpenAIVideos",
    "FakeOpenRouterVideo",
    "FakeProvider",
    "FakeReplicate",
    "FakeRunway",
    "FakeSeedance",
    "FakeStabilityImage",
    "FakeStabilityVideo",
    "FakeTask",
]
