"""What each generation asks of the fake provider: the plain work, or realistic work (``--realistic``).

Plain: one image model, one box, finished at once, every result ``result_bytes`` of the same bytes.
Realistic: several image and video models over several boxes; each task takes its own time at the
provider (images seconds, videos a minute or two) and returns its own bytes, sized from 100 KB to
20 MB (log-uniform within each kind, so small files are as common as in real use), MP4-headed for
videos. A plan is drawn from a seeded generator, so a run can be repeated exactly.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

__all__ = ["Job", "ModelSpec", "Shape", "plain_jobs", "realistic_jobs"]

KIB, MIB = 1024, 1024 * 1024


@dataclass(frozen=True)
class ModelSpec:
    """A model the bench creates: its name, IMAGE or VIDEO, and what its results are."""

    name: str
    model_type: str

    @property
    def media(self) -> str:
        """``image`` or ``video``."""
        return "video" if self.model_type == "VIDEO" else "image"


@dataclass(frozen=True)
class Shape:
    """The realistic mix; every range is (low, high)."""

    image_seconds: tuple[float, float] = (5.0, 30.0)
    video_seconds: tuple[float, float] = (20.0, 120.0)
    image_bytes: tuple[int, int] = (100 * KIB, 2 * MIB)
    video_bytes: tuple[int, int] = (2 * MIB, 20 * MIB)
    video_share: float = 0.3
    models: tuple[ModelSpec, ...] = (
        ModelSpec("bench-image", "IMAGE"),
        ModelSpec("bench-image-hd", "IMAGE"),
        ModelSpec("bench-video", "VIDEO"),
        ModelSpec("bench-video-pro", "VIDEO"),
    )
    boxes: int = 4


@dataclass(frozen=True)
class Job:
    """One generation: its model, which of the boxes, the provider's time for it and result size."""

    model: str
    box: int
    media: str
    finish_after: float
    size: int
    seed: str

    def config(self) -> dict[str, Any]:
        """The generation's ``config`` (the bench models' template turns it into the task's input)."""
        body: dict[str, Any] = {}
        if self.size > 0:
            body["size"] = self.size
        if self.seed:
            body["seed"] = self.seed
        if self.finish_after > 0:
            body["finish_after"] = round(self.finish_after, 3)
        if self.media == "video":
            body["media"] = "video"
        return body


def _log_uniform(rng: random.Random, low: int, high: int) -> int:
    return round(math.exp(rng.uniform(math.log(low), math.log(high))))


def realistic_jobs(n: int, seed: int = 27, shape: Shape | None = None) -> list[Job]:
    """``n`` realistic generations drawn from ``seed``."""
    shape = shape or Shape()
    rng = random.Random(seed)
    images = [m for m in shape.models if m.media == "image"]
    videos = [m for m in shape.models if m.media == "video"]
    jobs = []
    for index in range(n):
        video = bool(videos) and (not images or rng.random() < shape.video_share)
        model = rng.choice(videos if video else images)
        seconds = shape.video_seconds if video else shape.image_seconds
        sizes = shape.video_bytes if video else shape.image_bytes
        jobs.append(
            Job(
                model=model.name,
                box=rng.randrange(shape.boxes),
                media=model.media,
                finish_after=rng.uniform(*seconds),
                size=_log_uniform(rng, *sizes),
                seed=f"{seed}-{index}",
            )
        )
    return jobs


def plain_jobs(n: int, model: str) -> list[Job]:
    """``n`` generations of the plain work: one model, one box, instant, the default result size."""
    return [Job(model=model, box=0, media="image", finish_after=0.0, size=0, seed="") for _ in range(n)]
