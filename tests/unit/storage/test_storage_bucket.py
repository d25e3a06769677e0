"""The bucket's settings checks and read URLs, which are made without asking S3 anything."""

from __future__ import annotations

import pytest

from assetgen_dev.embedded import free_port
from assetgen_runtime.settings import load
from assetgen_storage.bucket import Bucket
from assetgen_storage.settings import StorageSettings

KEY = "boxes/b/a/obj_1.png"


def settings(**overrides: object) -> StorageSettings:
    values: dict[str, object] = {
        # Nothing listens there: a request to S3 would fail the test.
        "s3_endpoint": f"http://127.0.0.1:{free_port()}",
        "s3_access_key": "key",
        "s3_secret_key": "secret",
        "s3_bucket": "assets",
        "presign_expiry_seconds": 600,
    }
    values.update(overrides)
    return load(StorageSettings, environ={}, **values)


def test_read_url_is_presigned_locally_for_the_public_endpoint() -> None:
    bucket = Bucket(settings(s3_public_endpoint="https://s3.example.com", s3_region="eu-central-1"))
    url = bucket.read_url(KEY)
    assert url.startswith(f"https://s3.example.com/assets/{KEY}?")
    assert "X-Amz-Expires=600" in url and "eu-central-1" in url and "X-Amz-Signature=" in url


def test_read_url_is_under_the_public_base_url_when_set() -> None:
    bucket = Bucket(settings(s3_public_base_url="https://cdn.example.com/assets/"))
    assert bucket.read_url(KEY) == f"https://cdn.example.com/assets/{KEY}"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"s3_region": ""}, "ASSETGEN_S3_REGION must not be empty"),
        ({"part_size_bytes": 1024}, "ASSETGEN_S3_PART_SIZE_BYTES must be at least 5242880"),
        ({"s3_parts_in_flight": 0}, "ASSETGEN_S3_PARTS_IN_FLIGHT must be at least 1"),
    ],
)
def test_settings_that_cannot_work_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Bucket(settings(**overrides))
