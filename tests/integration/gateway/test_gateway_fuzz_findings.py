"""What fuzzing the public API found (test_api_fuzz.py), each pinned by a request of its own.

Malformed multipart bodies, odd Idempotency-Keys and NUL characters (on PostgreSQL) were internal
errors; a model's request_schema took any JSON array and then answered with a body the document
does not allow, and its model_type took true for IMAGE; a 405 did not say which methods the path has.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from assetgen_dev.demo_provider import make_png
from assetgen_dev.embedded import S3Server, start_nats
from assetgen_dev.stack import start_stack
from assetgen_gateway.api import IDEMPOTENCY_KEY_MAX
from assetgen_gateway.openapi import build_openapi

IMAGE_SCHEMA = {"model": "kie/image", "input": {"prompt": "{{prompt}}"}}
BOUNDARY = "fuzzboundary"


@dataclass
class Env:
    """The running system, an authenticated client, and a box and a model to act on."""

    http: httpx.AsyncClient
    box_id: str
    model_id: str


@pytest.fixture(scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> AsyncIterator[Env]:
    async with contextlib.AsyncExitStack() as cleanup:
        nats = start_nats(tmp_path_factory.mktemp("findings-nats"))
        cleanup.callback(nats.stop)
        stack = await start_stack(tmp_path_factory.mktemp("findings"), nats_url=nats.url, s3=s3_server)
        cleanup.push_async_callback(stack.stop)
        http = httpx.AsyncClient(
            base_url=stack.http_url, headers={"Authorization": f"Bearer {stack.token}"}, timeout=30
        )
        cleanup.push_async_callback(http.aclose)
        provider = await http.post(
            "/api/providers",
            json={"name": "kie", "preset": "kie-ai", "base_url": "http://127.0.0.1:9", "api_key": "k"},
        )
        assert provider.status_code == 201, provider.text
        model = await http.post(
            "/api/models",
            json={"provider": "kie", "name": "img", "model_type": "IMAGE", "request_schema": IMAGE_SCHEMA},
        )
        assert model.status_code == 201, model.text
        box = await http.post("/api/boxes", json={"name": "findings"})
        assert box.status_code == 201, box.text
        yield Env(http=http, box_id=box.json()["id"], model_id=model.json()["id"])


def _conforms(name: str, value: Any) -> bool:
    document = build_openapi()
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return Draft202012Validator(schema).is_valid(value)


def _part(name: str, body: bytes, filename: str = "") -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + body + b"\r\n"


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
MALFORMED_UPLOADS = {
    "no boundary": ("multipart/form-data", _part("file", b"x", "a.png") + f"--{BOUNDARY}--\r\n".encode()),
    "boundary never comes": (MULTIPART, b"just some bytes\r\nand more\r\n"),
    "empty body": (MULTIPART, b""),
    "part headers broken": (MULTIPART, f"--{BOUNDARY}\r\nno colon here\r\n\r\nx\r\n".encode()),
    "file part cut short": (MULTIPART, _part("file", make_png("cut"), "a.png")[:-2]),
    "closing boundary wrong": (MULTIPART, _part("file", make_png("wrong"), "a.png") + b"--other--\r\n"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_UPLOADS))
async def test_a_malformed_multipart_upload_is_refused_with_400(env: Env, case: str) -> None:
    content_type, body = MALFORMED_UPLOADS[case]
    response = await env.http.post(
        f"/api/boxes/{env.box_id}/upload", content=body, headers={"Content-Type": content_type}
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error.startswith(("malformed multipart body: ", "multipart body has no")), error


async def test_a_well_formed_upload_still_works(env: Env) -> None:
    body = _part("note", b"hello") + _part("file", make_png("ok"), "ok.png") + f"--{BOUNDARY}--\r\n".encode()
    response = await env.http.post(
        f"/api/boxes/{env.box_id}/upload", content=body, headers={"Content-Type": MULTIPART}
    )
    assert response.status_code == 201, response.text
    assert _conforms("Asset", response.json())


@pytest.mark.parametrize(
    "box_id",
    ["%00", "a%0Ab", "%F4%85%B1%89", "%06%3C%F4%85%B1%89%5D", "a.b", "*", "%3E", "%20", "x" * 3000],
)
async def test_box_ids_of_unusual_characters_are_not_found(env: Env, box_id: str) -> None:
    generate = await env.http.post(f"/api/boxes/{box_id}/generate", json={"model": "img", "prompt": "p"})
    upload = await env.http.post(
        f"/api/boxes/{box_id}/upload", files={"file": ("a.png", make_png("odd"), "image/png")}
    )
    listing = await env.http.get(f"/api/boxes/{box_id}/assets")
    for response in (generate, upload, listing):
        assert response.status_code in (400, 404), (response.request.url, response.status_code, response.text)


async def test_text_with_a_nul_character_is_refused_with_400(env: Env) -> None:
    # PostgreSQL's text can't hold U+0000: it failed there as an internal error.
    responses = {
        "id": await env.http.get("/api/boxes/a%00b"),
        "box_id": await env.http.post("/api/boxes/%00/generate", json={"model": "img", "prompt": "p"}),
        "name": await env.http.post("/api/boxes", json={"name": "a\u0000b"}),
        "model": await env.http.post(f"/api/boxes/{env.box_id}/generate", json={"model": "i\u0000"}),
        "cursor": await env.http.get(f"/api/boxes/{env.box_id}/assets", params={"cursor": "\x00"}),
        "filename": await env.http.post(
            f"/api/boxes/{env.box_id}/upload",
            # Raw in a part header aiohttp refuses it; RFC 5987 encoding brings it through.
            content=f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=file; filename*=UTF-8''a%00.png"
            "\r\n\r\n".encode()
            + make_png("nul")
            + f"\r\n--{BOUNDARY}--\r\n".encode(),
            headers={"Content-Type": MULTIPART},
        ),
    }
    for field, response in responses.items():
        assert response.status_code == 400, (field, response.text)
        assert response.json() == {"error": f"{field} must not contain NUL characters"}


@pytest.mark.parametrize("key", ["clé", "tab\there", "k" * (IDEMPOTENCY_KEY_MAX + 1)])
async def test_an_idempotency_key_grpc_cannot_carry_is_refused_with_400(env: Env, key: str) -> None:
    response = await env.http.post(
        f"/api/boxes/{env.box_id}/generate",
        json={"model": "img", "prompt": "p"},
        headers={b"Idempotency-Key": key.encode()},
    )
    assert response.status_code == 400, response.text
    assert "Idempotency-Key must be" in response.json()["error"]


async def test_an_idempotency_key_of_the_longest_kind_is_taken(env: Env) -> None:
    key = "k" * IDEMPOTENCY_KEY_MAX
    first = await env.http.post(
        f"/api/boxes/{env.box_id}/generate",
        json={"model": "img", "prompt": "p"},
        headers={"Idempotency-Key": key},
    )
    again = await env.http.post(
        f"/api/boxes/{env.box_id}/generate",
        json={"model": "img", "prompt": "p"},
        headers={"Idempotency-Key": key},
    )
    assert first.status_code == 202, first.text
    assert again.json()["id"] == first.json()["id"]


@pytest.mark.parametrize("template", [[None, None], [], ["{{prompt}}"], [{"prompt": "{{prompt}}"}, 5]])
async def test_a_request_schema_array_of_anything_but_objects_is_refused(env: Env, template: Any) -> None:
    update = await env.http.patch(f"/api/models/{env.model_id}", json={"request_schema": template})
    create = await env.http.post(
        "/api/models",
        json={"provider": "kie", "name": "arr", "model_type": "IMAGE", "request_schema": template},
    )
    for response in (update, create):
        assert response.status_code == 400, response.text
        assert "must hold one or more JSON objects" in response.json()["error"]
    unchanged = await env.http.get(f"/api/models/{env.model_id}")
    assert unchanged.json()["request_schema"] == IMAGE_SCHEMA


async def test_models_answer_as_the_document_says(env: Env) -> None:
    batch = [{"prompt": "{{prompt}}"}, {"prompt": "{{prompt}}", "seed": "{{seed?}}"}]
    created = await env.http.post(
        "/api/models",
        json={"provider": "kie", "name": "batch", "model_type": "IMAGE", "request_schema": batch},
    )
    assert created.status_code == 201, created.text
    assert created.json()["request_schema"] == batch
    assert _conforms("Model", created.json())
    updated = await env.http.patch(f"/api/models/{env.model_id}/", json={"api_endpoint": "/v2/submit"})
    assert updated.status_code == 200, updated.text
    assert _conforms("Model", updated.json())
    listing = await env.http.get("/api/models/")
    assert listing.status_code == 200
    assert {model["name"] for model in listing.json()["items"]} >= {"img", "batch"}
    assert _conforms("ListModelsResponse", listing.json())


async def test_true_is_no_model_type(env: Env) -> None:
    # protobuf's parser read it as the enum's value 1 (IMAGE).
    response = await env.http.patch(f"/api/models/{env.model_id}", json={"model_type": True})
    assert response.status_code == 400, response.text
    assert response.json() == {"error": "invalid model_type: true is not a ModelType"}


async def test_a_method_the_path_lacks_is_405_naming_the_ones_it_has(env: Env) -> None:
    response = await env.http.request("TRACE", f"/api/boxes/{env.box_id}")
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(",")) == {"GET", "PATCH", "DELETE"}
    assert response.json() == {"error": "Method Not Allowed"}
