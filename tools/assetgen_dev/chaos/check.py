"""The chaos verdict: every asset ended, and ended right, judged against what the providers saw.

Pure: it reads the generations the driver started, the assets the API answers, the providers'
records (``providers``), the bucket's objects (key → SHA-256) and the disruptions' log, and says:

* **stuck** — an asset not COMPLETED, FAILED or CANCELED (or a generation that never got an asset);
* **wrong** — a COMPLETED asset whose stored object is missing or whose bytes (SHA-256 of the object
  and the asset's own ``sha256``) differ from the bytes its provider task served, or whose task was
  to fail; a FAILED asset with a provider failure whose task did not fail;
* **unexplained** — a FAILED asset that is neither the provider's failure nor "outcome unknown" after
  a submit whose answer was lost (a 5xx, a 502 after creating, or the adapter killed meanwhile);
* **duplicates** — a prompt (one per asset attempt: the driver never retries) with more than one task;
* **orphans** — an object in the bucket that no COMPLETED asset holds;
* **extra assets** — assets in the box beyond one per generation (Generate is idempotent per key).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from assetgen_dev.fake_providers.base import FAIL_TEXT

__all__ = ["TERMINAL", "Generation", "Verdict", "judge"]

TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELED"})
# How an unknown outcome is told: by the adapter's sender, and by its ledger to a later call.
UNKNOWN_TEXTS = ("outcome unknown", "may or may not have the task")
# A submit (or an asset created) this close to a provider-adapter kill may have been on the wire then.
_KILL_WINDOW_SECONDS = 15.0
_MAX_PROBLEMS = 40


@dataclass(frozen=True)
class Generation:
    """One generation the driver asked for: its unique prompt, family, and the asset it got."""

    prompt: str
    family: str
    asset_id: str = ""
    error: str = ""  # why Generate never answered 202, when it did not


@dataclass
class Verdict:
    """What the checker found; ``passed`` when nothing is stuck, wrong, unexplained or duplicated."""

    generations: int
    completed: int = 0
    failed: Counter[str] = field(default_factory=Counter)  # reason → count
    canceled: int = 0
    stuck: int = 0
    wrong: int = 0
    unexplained: int = 0
    duplicates: int = 0
    orphans: int = 0
    extra_assets: int = 0
    abandoned_tasks: int = 0  # tasks the provider made whose asset ended "outcome unknown"
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every asset terminal and right, nothing duplicated, nothing orphaned."""
        return not (
            self.stuck
            or self.wrong
            or self.unexplained
            or self.duplicates
            or self.orphans
            or self.extra_assets
            or self.canceled
        )

    def problem(self, text: str) -> None:
        """Notes one problem (the first few are kept verbatim)."""
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(text)

    def line(self, seconds: float) -> str:
        """The one verdict line."""
        failed = sum(self.failed.values())
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(self.failed.items()))
        parts = [
            f"{self.generations} generations",
            f"{self.completed} completed",
            f"{failed} failed" + (f" ({reasons})" if reasons else ""),
            f"{self.duplicates} duplicates",
            f"{self.orphans} orphans",
            f"{self.stuck} stuck",
        ]
        for name, count in (
            ("wrong", self.wrong),
            ("unexplained failures", self.unexplained),
            ("extra assets", self.extra_assets),
            ("canceled", self.canceled),
        ):
            if count:
                parts.append(f"{count} {name}")
        return f"chaos: {'PASS' if self.passed else 'FAIL'} " + ", ".join(parts) + f", {seconds:.0f} s"


def judge(
    generations: Sequence[Generation],
    assets: Mapping[str, Mapping[str, Any]],
    records: Iterable[Mapping[str, Any]],
    objects: Mapping[str, str],
    *,
    adapter_kills: Sequence[float] = (),
) -> Verdict:
    """Judges a run; see the module docstring. ``adapter_kills`` are the times (``time.time()``) the
    provider-adapter was SIGKILLed."""
    verdict = Verdict(generations=len(generations))
    tasks: dict[str, list[Mapping[str, Any]]] = {}  # prompt → its tasks, every family
    submits: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        for task in record["tasks"]:
            tasks.setdefault(task["prompt"], []).append(task)
        for submit in record["submits"]:
            submits.setdefault(submit["prompt"], []).append(submit)

    for prompt, made in tasks.items():
        if len(made) > 1:
            verdict.duplicates += len(made) - 1
            verdict.problem(f"duplicate: {len(made)} tasks for {prompt!r}: {[t['task_id'] for t in made]}")

    held: set[str] = set()
    expected_assets: set[str] = set()
    for generation in generations:
        if not generation.asset_id:
            verdict.stuck += 1
            verdict.problem(f"no asset for {generation.prompt!r}: {generation.error}")
            continue
        expected_assets.add(generation.asset_id)
        asset = assets.get(generation.asset_id)
        if asset is None:
            verdict.stuck += 1
            verdict.problem(f"asset {generation.asset_id} ({generation.prompt!r}) not found")
            continue
        made = tasks.get(generation.prompt, [])
        status = asset.get("status", "")
        if status not in TERMINAL:
            verdict.stuck += 1
            verdict.problem(f"stuck: {generation.asset_id} {status} ({asset.get('provider_status', '')})")
        elif status == "COMPLETED":
            verdict.completed += 1
            key = str(asset.get("object_key", ""))
            held.add(key)
            _check_completed(verdict, generation, asset, made, objects.get(key))
        elif status == "FAILED":
            _check_failed(verdict, generation, asset, made, submits.get(generation.prompt, []), adapter_kills)
        else:
            verdict.canceled += 1
            verdict.problem(f"canceled: {generation.asset_id} (nobody canceled it)")

    extra = set(assets) - expected_assets
    verdict.extra_assets = len(extra)
    for asset_id in sorted(extra)[:5]:
        verdict.problem(f"extra asset {asset_id} ({assets[asset_id].get('prompt', '')!r})")
    for key in sorted(set(objects) - held):
        verdict.orphans += 1
        verdict.problem(f"orphan object {key}")
    return verdict


def _check_completed(
    verdict: Verdict,
    generation: Generation,
    asset: Mapping[str, Any],
    made: Sequence[Mapping[str, Any]],
    stored_sha256: str | None,
) -> None:
    task_id = asset.get("external_task_id", "")
    task = next((t for t in made if t["task_id"] == task_id), None)
    name = f"{generation.asset_id} ({generation.prompt!r})"
    if task is None:
        verdict.wrong += 1
        verdict.problem(f"wrong: {name} completed from task {task_id!r} the provider never made")
    elif task["outcome"] != "success":
        verdict.wrong += 1
        verdict.problem(f"wrong: {name} completed, but task {task_id} failed at the provider")
    elif stored_sha256 is None:
        verdict.wrong += 1
        verdict.problem(f"wrong: {name} completed, but its object {asset.get('object_key')!r} is missing")
    elif not (stored_sha256 == asset.get("sha256") == task["sha256"]):
        verdict.wrong += 1
        verdict.problem(
            f"wrong: {name} bytes differ: stored {stored_sha256}, asset {asset.get('sha256')}, "
            f"served {task['sha256']}"
        )


def _timestamps(asset: Mapping[str, Any], name: str) -> list[float]:
    text = str(asset.get(name) or "")
    try:
        return [datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()]
    except ValueError:
        return []


def _check_failed(
    verdict: Verdict,
    generation: Generation,
    asset: Mapping[str, Any],
    made: Sequence[Mapping[str, Any]],
    submits: Sequence[Mapping[str, Any]],
    adapter_kills: Sequence[float],
) -> None:
    error = str(asset.get("error_message", ""))
    name = f"{generation.asset_id} ({generation.prompt!r})"
    if FAIL_TEXT in error:
        if any(task["outcome"] == "fail" for task in made):
            verdict.failed["provider failure"] += 1
        else:
            verdict.wrong += 1
            verdict.problem(f"wrong: {name} failed as the provider's failure, but no task of it failed")
        return
    if any(text in error for text in UNKNOWN_TEXTS):
        lost = [s for s in submits if s["outcome"] in ("5xx", "lost")]
        if lost:
            verdict.failed["outcome unknown"] += 1
            verdict.abandoned_tasks += sum(1 for s in lost if s.get("task_id"))
            return
        # A submit on the wire when the adapter was killed (sent, or only marked as sending).
        times = [float(s["at"]) for s in submits if s["outcome"] == "ok"] + _timestamps(asset, "created_at")
        if any(abs(at - kill) <= _KILL_WINDOW_SECONDS for at in times for kill in adapter_kills):
            verdict.failed["outcome unknown (adapter killed)"] += 1
            verdict.abandoned_tasks += len(made)
            return
    verdict.unexplained += 1
    verdict.failed["unexplained"] += 1
    verdict.problem(f"unexplained failure: {name}: {error}")
