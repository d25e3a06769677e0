"""The chaos providers: fakes of three families that inject faults and remember every task.

Kie.ai's jobs API, Replicate and Luma, each on its own port, all in one process of their own so
they outlive every kill of the system's processes. Each task's outcome is drawn when it is made
(10 % fail, with the family's own failure), its result bytes are unique to it (a PNG drawn from
the prompt or task id; for Luma the demo MP4 with the task id in a trailing ``free`` box) and their
SHA-256 is remembered. ``GET /_chaos/record`` on each port answers what that provider saw: every task
(prompt, outcome, SHA-256 of the bytes it serves), every submit and what it got, and fault counts.

Run: ``python -m assetgen_dev.chaos.providers --api-key K --plan '<FaultPlan JSON>' --kie-port P
--replicate-port P --luma-port P``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import struct
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

from assetgen_dev.chaos.faults import FaultInjector, FaultPlan
from assetgen_dev.fake_providers.base import FakeTask, serve
from assetgen_dev.fake_providers.kie_jobs import FakeKieJobs, KieTask
from assetgen_dev.fake_providers.luma import FakeLuma
from assetgen_dev.fake_providers.media import demo_video
from assetgen_dev.fake_providers.replicate import FakeReplicate

__all__ = ["FAMILIES", "ChaosRecord", "TaskRecord", "chaos_app", "main", "make_fakes"]

FAMILIES = ("kie", "replicate", "luma")
# How a fake marks a task failed: its family's fake fails a prompt carrying this marker.
_FAIL_MARKER = " [fail]"


@dataclass
class TaskRecord:
    """A task a provider created: for which prompt, how it ends, the bytes it serves."""

    task_id: str
    prompt: str
    outcome: str  # "success" or "fail"
    sha256: str
    size: int
    at: float = field(default_factory=time.time)


class ChaosRecord:
    """Every task one provider made, by id and by prompt; its fault dice for outcomes."""

    def __init__(self, family: str, plan: FaultPlan) -> None:
        self.family = family
        self.plan = plan
        self.tasks: dict[str, TaskRecord] = {}
        self.by_prompt: dict[str, list[str]] = {}
        # Seeded apart from the request dice, so outcomes do not depend on how requests interleave.
        self._rng = random.Random(f"{plan.seed}-{family}-outcomes")

    def made(self, task_id: str, prompt: str, result: bytes) -> bool:
        """Records a new task; True when it is to fail."""
        doomed = self._rng.random() < self.plan.task_failure
        self.tasks[task_id] = TaskRecord(
            task_id,
            prompt,
            "fail" if doomed else "success",
            hashlib.sha256(result).hexdigest(),
            len(result),
        )
        self.by_prompt.setdefault(prompt, []).append(task_id)
        return doomed

    def tasks_for(self, prompt: str) -> list[str]:
        """Task ids made for ``prompt`` so far, oldest first."""
        return list(self.by_prompt.get(prompt, ()))


def _with_id_box(video: bytes, task_id: str) -> bytes:
    """The MP4 followed by a top-level ``free`` box holding ``task_id``: still a valid MP4, unique bytes."""
    payload = task_id.encode("utf-8")
    return video + struct.pack(">I", 8 + len(payload)) + b"free" + payload


class ChaosKie(FakeKieJobs):
    """Kie.ai jobs: tasks take 1-5 s; a doomed task ends in ``fail``."""

    def __init__(self, api_key: str, record: ChaosRecord) -> None:
        timing_rng = random.Random(f"{record.plan.seed}-kie-timing")
        super().__init__(api_key, timing=lambda body: timing_rng.uniform(1.0, 5.0), polls_before_done=1)
        self.record = record

    def _new_task(self, body: dict[str, Any], payload: dict[str, Any]) -> KieTask:
        task = super()._new_task(body, payload)
        if self.record.made(task.id, task.prompt, task.file.body()):
            task.prompt += _FAIL_MARKER
        return task


class _ChaosFake:
    """What the FakeProvider-based families share: outcomes drawn and recorded at creation."""

    record: ChaosRecord

    def _recorded(self, task: FakeTask) -> FakeTask:
        if self.record.made(task.id, task.prompt, task.result):
            task.prompt += _FAIL_MARKER
        return task


class ChaosReplicate(_ChaosFake, FakeReplicate):
    """Replicate predictions: ``starting``, one ``processing`` poll, then the outcome."""

    def __init__(self, api_key: str, record: ChaosRecord) -> None:
        super().__init__(api_key)
        self.record = record

    def new_task(self, prompt: str, request: Any, task_id: str = "") -> FakeTask:
        return self._recorded(super().new_task(prompt, request, task_id))


class ChaosLuma(_ChaosFake, FakeLuma):
    """Luma generations: ``queued``, one ``dreaming`` poll, then the outcome; unique MP4 bytes."""

    def __init__(self, api_key: str, record: ChaosRecord) -> None:
        super().__init__(api_key)
        self.record = record

    def new_task(self, prompt: str, request: Any, task_id: str = "") -> FakeTask:
        task = super().new_task(prompt, request, task_id)
        task.result = _with_id_box(demo_video(), task.id)
        return self._recorded(task)


_SUBMIT_PATHS = {
    "kie": "/api/v1/jobs/createTask",
    "replicate": "/v1/predictions",
    "luma": "/dream-machine/v1/generations",
}


def make_fakes(api_key: str, plan: FaultPlan) -> dict[str, ChaosKie | ChaosReplicate | ChaosLuma]:
    """One fake per family, each with its own record."""
    return {
        "kie": ChaosKie(api_key, ChaosRecord("kie", plan)),
        "replicate": ChaosReplicate(api_key, ChaosRecord("replicate", plan)),
        "luma": ChaosLuma(api_key, ChaosRecord("luma", plan)),
    }


def chaos_app(
    family: str, fake: ChaosKie | ChaosReplicate | ChaosLuma, plan: FaultPlan
) -> tuple[web.Application, FaultInjector]:
    """The family's application with the fault middleware and ``GET /_chaos/record``."""
    record = fake.record
    submit_path = _SUBMIT_PATHS[family]
    injector = FaultInjector(
        plan,
        is_submit=lambda request: request.path == submit_path,
        tasks_for=record.tasks_for,
        rng=random.Random(f"{plan.seed}-{family}-requests"),
    )
    if isinstance(fake, FakeKieJobs):
        app = fake.make_app()
    else:
        app = web.Application()
        app.router.add_get("/files/{task_id}", fake._serve_file)
        app.router.add_get("/inputs/image.png", fake._serve_input)
        fake.routes(app)
    app.middlewares.append(injector.middleware)

    async def serve_record(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "family": family,
                "tasks": [asdict(task) for task in record.tasks.values()],
                "submits": [asdict(submit) for submit in injector.submits],
                "faults": dict(injector.counts),
                "task_failures": sum(1 for task in record.tasks.values() if task.outcome == "fail"),
            }
        )

    app.router.add_get("/_chaos/record", serve_record)
    return app, injector


async def serve_all(api_key: str, plan: FaultPlan, ports: Mapping[str, int]) -> list[web.AppRunner]:
    """Serves every family on its port (0: a free one); the runners (``cleanup()`` stops each)."""
    runners = []
    for family, fake in make_fakes(api_key, plan).items():
        app, _ = chaos_app(family, fake, plan)
        runner, fake.base_url = await serve(app, "127.0.0.1", ports.get(family, 0))
        runners.append(runner)
    return runners


def main(argv: list[str] | None = None) -> None:
    """Serves the three chaos providers until killed."""
    parser = argparse.ArgumentParser(description="AssetGen chaos providers (Kie jobs, Replicate, Luma)")
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--plan", default=FaultPlan().to_json(), help="FaultPlan as JSON")
    for family in FAMILIES:
        parser.add_argument(f"--{family}-port", type=int, required=True)
    args = parser.parse_args(argv)
    plan = FaultPlan.from_json(args.plan)
    ports = {family: getattr(args, f"{family}_port") for family in FAMILIES}

    async def run() -> None:
        runners = await serve_all(args.api_key, plan, ports)
        try:
            await asyncio.Event().wait()
        finally:
            for runner in runners:
                await runner.cleanup()

    asyncio.run(run())


if __name__ == "__main__":
    main()
