"""The chaos verdict: each way an asset can end wrong is caught, and a clean run passes."""

from __future__ import annotations

from typing import Any

from assetgen_dev.chaos.check import Generation, judge
from assetgen_dev.fake_providers.base import FAIL_TEXT

SHA = "a" * 64


def _task(task_id: str, prompt: str, outcome: str = "success", sha256: str = SHA) -> dict[str, Any]:
    return {"task_id": task_id, "prompt": prompt, "outcome": outcome, "sha256": sha256, "size": 1, "at": 0}


def _submit(prompt: str, outcome: str = "ok", task_id: str = "", at: float = 0.0) -> dict[str, Any]:
    return {"prompt": prompt, "outcome": outcome, "task_id": task_id, "at": at}


def _record(tasks: list[dict[str, Any]], submits: list[dict[str, Any]]) -> dict[str, Any]:
    return {"family": "kie", "tasks": tasks, "submits": submits, "faults": {}, "task_failures": 0}


def _completed(asset_id: str, prompt: str, task_id: str, key: str, sha256: str = SHA) -> dict[str, Any]:
    return {
        "id": asset_id,
        "prompt": prompt,
        "status": "COMPLETED",
        "external_task_id": task_id,
        "object_key": key,
        "sha256": sha256,
    }


def _failed(asset_id: str, prompt: str, error: str, created_at: str = "") -> dict[str, Any]:
    return {
        "id": asset_id,
        "prompt": prompt,
        "status": "FAILED",
        "error_message": error,
        "created_at": created_at,
    }


def _clean() -> tuple[list[Generation], dict[str, dict[str, Any]], list[dict[str, Any]], dict[str, str]]:
    generations = [
        Generation("p1", "kie", "a1"),
        Generation("p2", "kie", "a2"),
        Generation("p3", "kie", "a3"),
    ]
    assets = {
        "a1": _completed("a1", "p1", "t1", "boxes/b/a1/x.png"),
        "a2": _failed("a2", "p2", f"kie: {FAIL_TEXT}"),
        "a3": _failed("a3", "p3", "outcome unknown at chaos-kie: provider answered HTTP 502"),
    }
    records = [
        _record(
            [_task("t1", "p1"), _task("t2", "p2", "fail"), _task("t3", "p3")],
            [_submit("p1", task_id="t1"), _submit("p2", task_id="t2"), _submit("p3", "lost", "t3")],
        )
    ]
    return generations, assets, records, {"boxes/b/a1/x.png": SHA}


def test_a_clean_run_passes_and_says_so_in_one_line() -> None:
    verdict = judge(*_clean())
    assert verdict.passed, verdict.problems
    assert (verdict.completed, dict(verdict.failed)) == (1, {"provider failure": 1, "outcome unknown": 1})
    assert verdict.abandoned_tasks == 1
    assert verdict.line(412.4) == (
        "chaos: PASS 3 generations, 1 completed, 2 failed (1 outcome unknown, 1 provider failure), "
        "0 duplicates, 0 orphans, 0 stuck, 412 s"
    )


def test_a_second_task_for_one_asset_attempt_is_a_duplicate() -> None:
    generations, assets, records, objects = _clean()
    records[0]["tasks"].append(_task("t1b", "p1"))
    verdict = judge(generations, assets, records, objects)
    assert not verdict.passed and verdict.duplicates == 1
    assert "FAIL" in verdict.line(1) and "1 duplicates" in verdict.line(1)


def test_an_object_no_completed_asset_holds_is_an_orphan() -> None:
    generations, assets, records, objects = _clean()
    objects["boxes/b/a1/older.png"] = SHA
    verdict = judge(generations, assets, records, objects)
    assert not verdict.passed and verdict.orphans == 1
    assert any("boxes/b/a1/older.png" in problem for problem in verdict.problems)


def test_an_asset_still_in_flight_or_never_made_is_stuck() -> None:
    generations, assets, records, _ = _clean()
    assets["a1"] = {**assets["a1"], "status": "PROCESSING"}
    generations.append(Generation("p4", "kie", error="HTTP 400: bad"))
    verdict = judge(generations, assets, records, {})
    assert not verdict.passed and verdict.stuck == 2


def test_completed_bytes_must_be_the_providers_own() -> None:
    generations, assets, records, objects = _clean()
    assert not judge(generations, assets, records, {"boxes/b/a1/x.png": "b" * 64}).passed  # stored differ
    assert not judge(generations, assets, records, {}).passed  # object missing
    records[0]["tasks"][0]["outcome"] = "fail"
    verdict = judge(generations, assets, records, objects)  # completed a task that failed
    assert verdict.wrong == 1 and not verdict.passed


def test_a_provider_failure_needs_a_failed_task() -> None:
    generations, assets, records, objects = _clean()
    records[0]["tasks"][1]["outcome"] = "success"
    verdict = judge(generations, assets, records, objects)
    assert verdict.wrong == 1 and not verdict.passed


def test_an_unknown_outcome_needs_a_lost_answer_or_an_adapter_kill_nearby() -> None:
    generations, assets, records, objects = _clean()
    records[0]["submits"][2] = _submit("p3", "ok", "t3", at=1000.0)
    verdict = judge(generations, assets, records, objects)
    assert verdict.unexplained == 1 and not verdict.passed
    verdict = judge(generations, assets, records, objects, adapter_kills=[1010.0])
    assert verdict.passed and verdict.failed["outcome unknown (adapter killed)"] == 1
    # Only marked as sending when the adapter died: no submit reached the provider, the asset's
    # creation time places it.
    records[0]["submits"].pop(2)
    records[0]["tasks"].pop(2)
    assets["a3"] = {**assets["a3"], "created_at": "1970-01-01T00:16:45Z"}  # 1005 s
    assert judge(generations, assets, records, objects, adapter_kills=[1010.0]).passed
    assert not judge(generations, assets, records, objects, adapter_kills=[5000.0]).passed


def test_any_other_failure_or_cancel_or_extra_asset_fails_the_run() -> None:
    generations, assets, records, objects = _clean()
    assets["a2"] = _failed("a2", "p2", "timed out after 15m")
    assert judge(generations, assets, records, objects).unexplained == 1
    generations, assets, records, objects = _clean()
    assets["a1"] = {**assets["a1"], "status": "CANCELED"}
    assert not judge(generations, assets, records, objects).passed
    generations, assets, records, objects = _clean()
    assets["a9"] = _failed("a9", "p1", "whatever")
    verdict = judge(generations, assets, records, objects)
    assert verdict.extra_assets == 1 and not verdict.passed
