"""The type-preserving request template renderer."""

from __future__ import annotations

import copy
import json

import pytest

from assetgen_provider_adapter.templates import MissingVariables, inspect_template, render, render_text
from assetgen_runtime.errors import InvalidArgument


@pytest.mark.parametrize(
    "value",
    [42, 2.5, True, False, "5", ["a", "b"], {"nested": [1, {"x": None}]}, ""],
)
def test_whole_placeholder_keeps_the_values_json_type(value: object) -> None:
    assert render({"v": "{{v}}"}, {"v": value}) == {"v": value}


def test_placeholders_inside_longer_strings_are_text() -> None:
    rendered = render(
        {"url": "https://x/{{id}}?n={{n}}&on={{flag}}&l={{list}}"},
        {"id": "abc", "n": 3, "flag": True, "list": [1, "b"]},
    )
    assert rendered == {"url": 'https://x/abc?n=3&on=true&l=[1,"b"]'}


def test_nested_objects_and_arrays_are_walked_and_keys_left_literal() -> None:
    template = {
        "model": "m",
        "input": {"prompt": "{{prompt}}", "urls": ["{{image_url}}", "fixed"], "{{k}}": 1},
    }
    rendered = render(template, {"prompt": "p", "image_url": "u", "k": "ignored"})
    assert rendered == {"model": "m", "input": {"prompt": "p", "urls": ["u", "fixed"], "{{k}}": 1}}


def test_optional_unset_drops_the_key_and_the_array_element() -> None:
    template = {"a": "{{a?}}", "b": ["x", "{{b?}}", "y"], "c": "pre-{{c?}}-post", "d": "{{d?}}"}
    assert render(template, {"d": 0}) == {"b": ["x", "y"], "c": "pre--post", "d": 0}


def test_null_counts_as_unset() -> None:
    assert render({"a": "{{a?}}"}, {"a": None}) == {}
    with pytest.raises(MissingVariables):
        render({"a": "{{a}}"}, {"a": None})


def test_every_missing_required_variable_is_named_once() -> None:
    template = {"a": "{{prompt}}", "b": ["{{image_url}}"], "c": "x {{prompt}} {{seed}}", "d": "{{opt?}}"}
    with pytest.raises(MissingVariables) as error:
        render(template, {})
    assert error.value.names == ["image_url", "prompt", "seed"]
    assert isinstance(error.value, InvalidArgument)
    assert error.value.message == "missing template variables: image_url, prompt, seed"


def test_output_is_valid_json_whatever_the_values_contain() -> None:
    nasty = 'he said "hi"\n\tand left \\ {{not_a_var}} ✓ 🦊 </script>'
    rendered = render({"prompt": "{{prompt}}", "inline": "say: {{prompt}}"}, {"prompt": nasty})
    decoded = json.loads(json.dumps(rendered))
    assert decoded["prompt"] == nasty
    assert decoded["inline"] == "say: " + nasty


def test_values_are_not_rendered_again() -> None:
    assert render({"p": "{{p}}"}, {"p": "{{q}}", "q": "no"}) == {"p": "{{q}}"}


def test_the_template_is_not_modified() -> None:
    template = {"a": ["{{x?}}", {"b": "{{y}}"}]}
    before = copy.deepcopy(template)
    render(template, {"y": [1]})["a"][0]["b"].append(2)
    assert template == before


def test_spaces_inside_braces_and_non_string_leaves() -> None:
    assert render({"p": "{{ prompt }}", "n": 1, "z": None, "t": True}, {"prompt": "x"}) == {
        "p": "x",
        "n": 1,
        "z": None,
        "t": True,
    }


def test_array_template_and_top_level_optional() -> None:
    assert render(["{{a}}", "{{b?}}"], {"a": {"k": 1}}) == [{"k": 1}]
    assert render("{{a?}}", {}) is None


def test_inspect_lists_variables_in_order_and_required_ones() -> None:
    template = {"p": "{{prompt}}", "i": ["{{image_url?}}"], "c": "{{seed?}} {{prompt}}", "x": "{{image_url}}"}
    found = inspect_template(template)
    assert found.variables == ("prompt", "image_url", "seed")
    assert found.required == ("prompt", "image_url")


def test_render_text_for_urls_and_headers() -> None:
    assert render_text("/v1/{{task_id}}/{{n}}", {"task_id": "t1", "n": 2}) == "/v1/t1/2"
    assert render_text("Bearer {{secret}}", {"secret": "s"}) == "Bearer s"
    assert render_text("a{{x?}}b", {}) == "ab"
    with pytest.raises(MissingVariables, match="task_id"):
        render_text("/v1/{{task_id}}", {})
