"""A batch item's status carries what a single call's error carries: code, message and reason."""

from __future__ import annotations

import grpc

from assetgen_runtime.errors import NotFound, TooLarge, reason_of, rpc_status, status_error


def test_a_batch_items_error_keeps_its_code_message_and_reason() -> None:
    error = status_error(rpc_status(TooLarge("the result is larger than 2 GiB")))

    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == "the result is larger than 2 GiB"
    assert reason_of(error) == "TOO_LARGE"


def test_an_error_without_a_reason_has_none_after_the_round_trip() -> None:
    status = rpc_status(NotFound("model 'img' not found"))
    error = status_error(status)

    assert list(status.details) == []
    assert error.code() == grpc.StatusCode.NOT_FOUND and reason_of(error) == ""


def test_an_unexpected_exception_is_internal_without_its_internals() -> None:
    error = status_error(rpc_status(KeyError("secret internals")))

    assert error.code() == grpc.StatusCode.INTERNAL and "secret" not in (error.details() or "")
