"""The realistic work's plan (bench/workload.py) and the stored-object check (bench/integrity.py)."""

from __future__ import annotations

from bench.integrity import problems
from bench.workload import Shape, plain_jobs, realistic_jobs

MIB = 1024 * 1024


def test_a_realistic_plan_spreads_time_size_models_and_boxes_within_its_ranges() -> None:
    shape = Shape()
    jobs = realistic_jobs(2000, seed=5, shape=shape)
    videos = [job for job in jobs if job.media == "video"]
    images = [job for job in jobs if job.media == "image"]
    assert 0.25 < len(videos) / len(jobs) < 0.35
    assert all(20.0 <= job.finish_after <= 120.0 and 2 * MIB <= job.size <= 20 * MIB for job in videos)
    assert all(5.0 <= job.finish_after <= 30.0 and 100 * 1024 <= job.size <= 2 * MIB for job in images)
    assert {job.model for job in videos} == {"bench-video", "bench-video-pro"}
    assert {job.model for job in images} == {"bench-image", "bench-image-hd"}
    assert {job.box for job in jobs} == set(range(shape.boxes))
    assert len({job.seed for job in jobs}) == len(jobs)  # every result its own bytes
    # Log-uniform sizes: as many images below the range's geometric middle (~450 KB) as above it.
    assert 0.4 < sum(1 for job in images if job.size < 452_000) / len(images) < 0.6


def test_a_plan_is_the_same_for_the_same_seed_and_differs_for_another() -> None:
    assert realistic_jobs(50, seed=1) == realistic_jobs(50, seed=1)
    assert realistic_jobs(50, seed=1) != realistic_jobs(50, seed=2)


def test_a_job_becomes_the_generation_config_its_model_template_reads() -> None:
    video = next(job for job in realistic_jobs(50) if job.media == "video")
    config = video.config()
    assert config["media"] == "video" and config["size"] == video.size and config["seed"] == video.seed
    assert config["finish_after"] == round(video.finish_after, 3)
    assert plain_jobs(2, "bench-image")[0].config() == {}  # the plain work: instant, default size


def test_problems_compare_sent_stored_and_recorded_bytes() -> None:
    served = {"bytes": 10, "sha256": "aa"}
    asset = {"size_bytes": 10, "sha256": "aa"}
    assert problems(asset, served, (10, "aa")) == []
    assert problems(asset, served, (10, "bb")) == [
        "stored SHA-256 differs from the bytes the provider sent",
        "the asset's SHA-256 differs from the stored object's",
    ]
    assert problems({"size_bytes": 9, "sha256": "aa"}, served, (10, "aa")) == [
        "the asset records 9 bytes, the object has 10"
    ]
    assert problems(asset, None, (10, "aa")) == ["the provider served no result for its task"]
    assert problems(asset, {"bytes": 11, "sha256": "aa"}, (10, "aa")) == [
        "stored 10 bytes, the provider sent 11"
    ]
