"""Reading a provider's answers as its profile says: failures, task state, progress and outputs.

Pure functions of a profile and a :class:`ProviderAnswer`; nothing here sends a request.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urljoin

from assetgen_provider_adapter.engine_types import (
    FAILED,
    MAX_TEXT,
    Output,
    ProviderAnswer,
    ProviderTarget,
    TaskResult,
    as_text,
    decode_data_uri,
)
from assetgen_provider_adapter.paths import ParsedResult, evaluate, truthy
from assetgen_provider_adapter.profile_sections import OutputSpec, StateSpec
from assetgen_provider_adapter.profiles import Profile

__all__ = [
    "TooLarge",
    "captured",
    "failure",
    "outputs_of",
    "reported_failure",
    "state_of",
    "status_of",
    "submit_answer",
]


class TooLarge(Exception):
    """An inline result exceeds the size cap."""


def failure(
    profile: Profile,
    answer: ProviderAnswer,
    fallback: str,
    *,
    task_id: str = "",
    handle: dict[str, Any] | None = None,
    raw_state: str = "",
    task: bool = False,
) -> TaskResult:
    """A FAILED result with the provider's own error text and code, else ``fallback`` and the status.

    ``task``: the task failed (read with ``error.task_*``), rather than the call being refused
    (``error.call_*``). ``task_id``, ``handle`` and ``raw_state`` say which task, when one exists.
    """
    message = code = ""
    if answer.body is not None:
        message_paths, code_paths = profile.error.paths(task=task)
        message = _first_text(message_paths, answer.body)
        code = _first_text(code_paths, answer.body)
    # A quoted answer is capped wherever it came from: the profile's paths may select a whole body.
    message, code = message[:MAX_TEXT], code[:MAX_TEXT]
    if not message:
        message = answer.text.strip()[:MAX_TEXT] if answer.body is None else ""
    if not message:
        message = fallback
    if not code and not answer.ok:
        code = str(answer.status)
    return TaskResult(
        state=FAILED,
        task_id=task_id,
        handle={} if handle is None else handle,
        raw_state=raw_state,
        error_message=message,
        error_code=code,
    )


def _first_text(paths: tuple[Any, ...], body: Any) -> str:
    for path in paths:
        text = as_text(evaluate(path, body))
        if text:
            return text
    return ""


def reported_failure(
    profile: Profile,
    answer: ProviderAnswer,
    *,
    task_id: str = "",
    handle: dict[str, Any] | None = None,
    raw_state: str = "",
    task: bool = True,
) -> TaskResult | None:
    """The FAILED result when the answer's body says the task failed (``error.failure_when``), else None.

    ``task`` False: the answer is a submit's, so the failure is a refused call.
    """
    failure_when = profile.error.failure_when
    if failure_when is None or answer.body is None or not truthy(evaluate(failure_when, answer.body)):
        return None
    return failure(
        profile,
        answer,
        "the provider reported a failure",
        task_id=task_id,
        handle=handle,
        raw_state=raw_state,
        task=task,
    )


def captured(captures: tuple[tuple[str, ParsedResult], ...], body: Any) -> dict[str, Any]:
    """The named values an answer holds at the capture paths (absent ones left out)."""
    return {name: value for name, path in captures if (value := evaluate(path, body)) is not None}


def submit_answer(profile: Profile, body: Any) -> tuple[str, dict[str, Any]]:
    """(task id, handle) of an accepted submit: the id at ``submit.task_id`` and the captures."""
    submit = profile.submit
    handle = captured(submit.captures, body)
    task_id = as_text(evaluate(submit.task_id, body)) if submit.task_id is not None else ""
    return task_id, handle


def state_of(spec: StateSpec, answer: ProviderAnswer) -> tuple[str, str]:
    """(normalised state, raw value); a value the map lacks is the profile's non-terminal default."""
    if spec.from_http_status:
        raw: Any = answer.status
    elif spec.path is not None and answer.body is not None:
        raw = evaluate(spec.path, answer.body)
    else:
        raw = None
    text = ("true" if raw else "false") if isinstance(raw, bool) else as_text(raw)
    return spec.map.get(text, spec.unknown), text


def _progress(profile: Profile, body: Any) -> float:
    path = profile.poll.progress if profile.poll is not None else None
    if path is None or body is None:
        return 0.0
    try:
        value = float(evaluate(path, body))
    except (TypeError, ValueError):
        return 0.0
    if value > 1.0:
        value /= 100.0  # a percentage
    return min(max(value, 0.0), 1.0)


def status_of(profile: Profile, answer: ProviderAnswer, task_id: str, handle: dict[str, Any]) -> TaskResult:
    """Normalises a status answer (a poll, or a hybrid submit's answer) without the outputs."""
    failed = reported_failure(profile, answer, task_id=task_id, handle=handle)
    if failed is not None:
        return failed
    if profile.poll is None:
        raise ValueError(f"profile {profile.name!r} has no poll section to read a task's state with")
    state, raw = state_of(profile.poll.state, answer)
    progress = _progress(profile, answer.body)
    if state == FAILED:
        failed = failure(
            profile,
            answer,
            profile.poll.state.messages.get(raw) or f"the provider reported state {raw!r}",
            task_id=task_id,
            handle=handle,
            raw_state=raw,
            task=True,
        )
        failed.progress = progress
        return failed
    return TaskResult(state=state, raw_state=raw, task_id=task_id, handle=handle, progress=progress)


def outputs_of(
    target: ProviderTarget,
    answer: ProviderAnswer | None,
    body: Any,
    *,
    max_inline: int,
    auth_headers: Callable[[str], dict[str, str]],
) -> list[Output]:
    """The result files a (status, submit or result) answer names, per ``result.outputs``;
    ``auth_headers`` gives a download URL's auth (``result.download.auth: inherit``).

    Raises TooLarge when an inline result passes the cap; ValueError when one is malformed.
    """
    if answer is not None and answer.too_large:
        raise TooLarge()
    outputs: list[Output] = []
    for spec in target.profile.result.outputs:
        if spec.kind == "raw_body":
            if answer is not None:
                outputs.extend(_raw_body(spec, answer))
        elif body is not None and spec.path is not None:
            outputs.extend(_found(target, spec, evaluate(spec.path, body), max_inline, auth_headers))
    return outputs


def _raw_body(spec: OutputSpec, answer: ProviderAnswer) -> list[Output]:
    media_type = answer.headers.get("content-type", "").split(";")[0].strip()
    content_type = media_type if spec.content_type in ("", "from_header") else spec.content_type
    if not answer.content:
        return []
    return [Output(kind="inline", content_type=content_type, data=answer.content)]


def _found(
    target: ProviderTarget,
    spec: OutputSpec,
    value: Any,
    max_inline: int,
    auth_headers: Callable[[str], dict[str, str]],
) -> list[Output]:
    """The outputs of the value found at an output's path: one item or a list of them."""
    outputs: list[Output] = []
    for item in value if isinstance(value, list) else [value]:
        item_type = spec.content_type
        if isinstance(item, Mapping):
            item_type = spec.content_type or str(item.get("content_type") or "")
            item = item.get("url")
        if not isinstance(item, str) or not item:
            continue
        if item.startswith("/"):
            item = urljoin(target.base_url + "/", item)  # a path on the provider's own origin
        if spec.kind == "base64":
            if len(item) * 3 // 4 > max_inline:
                raise TooLarge()
            try:
                data = base64.b64decode(item, validate=False)
            except (binascii.Error, ValueError) as exc:
                raise ValueError(f"the provider's base64 result is malformed: {exc}") from None
            outputs.append(Output(kind="inline", content_type=item_type, data=data))
        elif item.startswith("data:"):
            if len(item) * 3 // 4 > max_inline:
                raise TooLarge()
            data, media_type = decode_data_uri(item)
            outputs.append(Output(kind="inline", content_type=item_type or media_type, data=data))
        elif target.profile.result.download_with_auth:
            outputs.append(
                Output(kind="download", content_type=item_type, url=item, headers=auth_headers(item))
            )
        else:
            outputs.append(Output(kind="url", content_type=item_type, url=item))
    return outputs
