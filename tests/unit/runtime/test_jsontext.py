import pytest

from assetgen_runtime.jsontext import NotAJsonObject, parse_json_object


def test_an_object_is_returned() -> None:
    assert parse_json_object('{"a": [1, 2]}', "body") == {"a": [1, 2]}
    assert parse_json_object(b'{"a": 1}', "body") == {"a": 1}


def test_text_that_is_not_json_names_the_field() -> None:
    with pytest.raises(NotAJsonObject, match=r"^variables_json is not JSON: "):
        parse_json_object("{oops", "variables_json")


@pytest.mark.parametrize("text", ["[1]", '"x"', "3", "null"])
def test_json_that_is_not_an_object_is_refused(text: str) -> None:
    with pytest.raises(NotAJsonObject, match=r"^config must be a JSON object$"):
        parse_json_object(text, "config")


def test_blank_text_is_the_given_default_or_an_error() -> None:
    assert parse_json_object("  ", "handle", blank={}) == {}
    with pytest.raises(NotAJsonObject):
        parse_json_object("", "handle")
