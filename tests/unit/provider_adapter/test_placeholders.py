"""Every placeholder a profile or a model uses is checked against what that request has, when the
profile or model is created: a mistake is a 400 before any task is paid for.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from assetgen_provider_adapter.placeholders import (
    check_key_shape,
    check_model,
    handle_names,
    submit_variables,
)
from assetgen_provider_adapter.profiles import Profile, ProfileError, load_presets
from assetgen_runtime.errors import InvalidArgument


def _profile(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "auth": {"in": "header", "name": "Authorization", "template": "Bearer {{secret}}"},
        "submit": {
            "request": {"method": "POST", "url": "/v1/jobs", "body": {"type": "json"}},
            "task_id": "id",
        },
        "poll": {
            "request": {"method": "GET", "url": "/v1/jobs/{{task_id}}"},
            "state": {"path": "state", "map": {"done": "COMPLETED"}},
        },
        "result": {"source": "status", "outputs": [{"kind": "url", "path": "url"}]},
    }
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return data


def test_an_inline_profile_needs_no_name_description_or_base_url() -> None:
    profile = Profile.parse(_profile())
    assert profile.name == "inline" and profile.base_url == ""


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"submit__request__url": "/v1/jobs/{{task_id}}"}, "$.submit.request: {{task_id}} has no value"),
        ({"submit__request__headers": {"X": "{{jwt}}"}}, "$.submit.request: {{jwt}}"),
        ({"connection": {"default_headers": {"X": "{{task_id}}"}}}, "$.connection.default_headers"),
        ({"poll__request__headers": {"X-Key": "{{secret}}"}}, "$.poll.request: {{secret}} is for auth only"),
        ({"auth__template": "Bearer {{jwt}}"}, "{{jwt}} needs auth.jwt"),
        (
            {"auth__jwt": {"secret": "{{secret_key}}", "claims": {"iss": "{{access_key}}"}}},
            "auth.jwt is set but the template never uses {{jwt}}",
        ),
        (
            {
                "submit__request__body": {"type": "json", "template": {"p": "{{prompt}}"}},
                "poll__request__url": "/j/{{kind}}/{{task_id}}",
            },
            "$.poll.request: {{kind}} is neither built in",
        ),
        (
            {
                "result": {
                    "source": "request",
                    "request": {"method": "GET"},
                    "outputs": [{"kind": "raw_body"}],
                }
            },
            "$.result.request: needs url",
        ),
    ],
)
def test_placeholders_without_a_value_there_are_refused(change: dict[str, Any], expected: str) -> None:
    with pytest.raises(ProfileError) as error:
        Profile.parse(_profile(**change))
    assert expected in str(error.value)


def test_a_poll_capture_serves_the_result_request_only() -> None:
    data = _profile(
        poll__captures={"file_id": "file_id"},
        result={
            "source": "request",
            "request": {"method": "GET", "url": "/files", "query": {"file_id": "{{file_id}}"}},
            "outputs": [{"kind": "url", "path": "file.url"}],
        },
    )
    profile = Profile.parse(data)
    assert profile.handle_variables == frozenset()
    check_model(data, {"prompt": "{{prompt}}"}, "")
    data["cancel"] = {"request": {"method": "POST", "url": "/cancel/{{file_id}}"}}
    # In cancel, file_id would be a generation variable, which the model's template lacks.
    with pytest.raises(InvalidArgument, match=r"cancel request uses \{\{file_id\}\}"):
        check_model(data, {"prompt": "{{prompt}}"}, "")


def test_a_later_request_may_use_a_variable_the_submit_sends() -> None:
    data = _profile(poll__request__url="/v1/{{kind}}/{{task_id}}")
    assert handle_names(data) == {"kind"}
    check_model(data, {"prompt": "{{prompt}}", "kind": "{{kind}}"}, "")
    with pytest.raises(InvalidArgument, match=r"poll request uses \{\{kind\}\}, which neither"):
        check_model(data, {"prompt": "{{prompt}}"}, "")  # a typo or a variable never sent


def test_a_model_template_cannot_use_what_exists_only_later() -> None:
    with pytest.raises(InvalidArgument, match=r"template uses \{\{task_id\}\}"):
        check_model(_profile(), {"prompt": "{{prompt}}", "id": "{{task_id}}"}, "")


def test_a_profile_without_a_submit_url_needs_the_models_endpoint() -> None:
    data = _profile()
    del data["submit"]["request"]["url"]
    Profile.parse(data)
    with pytest.raises(InvalidArgument, match="api_endpoint"):
        check_model(data, {"prompt": "{{prompt}}"}, "")
    check_model(data, {"prompt": "{{prompt}}"}, "/v2/render")


def test_kling_polls_its_submit_path() -> None:
    kling = load_presets()["kling"]
    assert kling.handle_variables == {"submit_path"}
    check_model(kling.data, {"prompt": "{{prompt}}"}, "/v1/videos/image2video")


def test_the_key_must_have_the_parts_the_auth_uses() -> None:
    kling = load_presets()["kling"].data
    check_key_shape(kling, parts=["access_key", "secret_key"])
    with pytest.raises(InvalidArgument, match="access_key, secret_key"):
        check_key_shape(kling, parts=None)
    with pytest.raises(InvalidArgument, match="lacks part"):
        check_key_shape(kling, parts=["access_key"])
    with pytest.raises(InvalidArgument, match="one-part key"):
        check_key_shape(load_presets()["minimax"].data, parts=["access_key"])
    check_key_shape(load_presets()["minimax"].data, parts=None)


def test_every_preset_passes_its_own_checks() -> None:
    for name, profile in load_presets().items():
        data = copy.deepcopy(dict(profile.data))
        Profile.parse(data)
        endpoint = "" if data["submit"]["request"].get("url") else "/x"
        check_model(data, {"prompt": "{{prompt}}"}, endpoint), name


def test_a_variable_a_submit_header_needs_is_required_like_the_bodys() -> None:
    data = _profile(submit__request__headers={"X-Workspace": "{{workspace}}", "X-Tag": "{{tag?}}"})
    variables = submit_variables(data, {"prompt": "{{prompt}}", "seed": "{{seed?}}"}, "")
    assert set(variables.required) == {"prompt", "workspace"}
    assert set(variables.variables) == {"prompt", "seed", "workspace", "tag"}
    with_endpoint = submit_variables(data, {"prompt": "{{prompt}}"}, "/v1/{{family}}")
    assert "family" in with_endpoint.required
