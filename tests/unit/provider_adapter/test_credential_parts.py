"""Keys of named parts (Kling's access and secret key): checked, sealed as one ciphertext like any
key, and opened into the parts auth templates use by name.
"""

from __future__ import annotations

import pytest

from assetgen.v1 import gateway_pb2
from assetgen_provider_adapter.credentials import (
    Credential,
    SecretBox,
    check_parts,
    open_credential,
    seal_parts,
)
from assetgen_runtime.codec import message_from_json
from assetgen_runtime.errors import InvalidArgument


def test_parts_round_trip_through_one_ciphertext() -> None:
    box = SecretBox.from_passphrase("operator secret")
    ciphertext = box.encrypt(seal_parts({"access_key": "ak-1", "secret_key": "sk-1"}))
    assert "sk-1" not in ciphertext and "secret_key" not in ciphertext
    credential = open_credential(box.decrypt(ciphertext))
    assert credential.secret is None
    assert dict(credential.parts) == {"access_key": "ak-1", "secret_key": "sk-1"}
    assert credential.values() == {"secret": "", "access_key": "ak-1", "secret_key": "sk-1"}


def test_a_plain_key_stays_a_one_part_key() -> None:
    credential = open_credential("sk-live-123")
    assert credential.secret == "sk-live-123" and not credential.parts and credential


def test_repr_hides_the_values() -> None:
    text = repr(Credential(secret="sk-a", parts={"secret_key": "sk-b"}))
    assert "sk-a" not in text and "sk-b" not in text


@pytest.mark.parametrize(
    ("parts", "problem"),
    [
        ({"Access": "x"}, "'Access' must be lower case"),
        ({"secret": "x"}, "'secret' must be lower case"),
        ({"jwt": "x"}, "'jwt' must be lower case"),
        ({"access_key": " "}, "'access_key' is empty"),
        ({f"p{i}": "x" for i in range(9)}, "at most 8"),
    ],
)
def test_bad_parts_are_refused_naming_the_part(parts: dict[str, str], problem: str) -> None:
    with pytest.raises(InvalidArgument, match=problem):
        check_parts(parts)


def test_check_parts_strips_values() -> None:
    assert check_parts({"access_key": " ak "}) == {"access_key": "ak"}


def test_http_json_gives_parts_as_an_object_and_a_key_as_a_string() -> None:
    request = gateway_pb2.CreateProviderRequest()
    message_from_json(
        request, {"name": "k", "preset": "kling", "api_key": {"access_key": "a", "secret_key": "s"}}
    )
    assert dict(request.api_key_parts) == {"access_key": "a", "secret_key": "s"} and request.api_key == ""
    plain = gateway_pb2.CreateProviderRequest()
    message_from_json(plain, {"name": "k", "preset": "kie-ai", "api_key": "sk"})
    assert plain.api_key == "sk" and not plain.api_key_parts


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"api_key": {"access_key": 1}}, "every part of api_key must be a string"),
        (
            {"api_key": {"access_key": "a"}, "api_key_parts": {"secret_key": "s"}},
            "give api_key as an object or api_key_parts, not both",
        ),
    ],
)
def test_http_json_refuses_parts_it_cannot_keep_whole(body: dict[str, object], problem: str) -> None:
    with pytest.raises(InvalidArgument, match=problem):
        message_from_json(gateway_pb2.CreateProviderRequest(), {"name": "k", "preset": "kling", **body})
