"""The provider-adapter's own errors, on top of ``assetgen_runtime.errors``.

Hierarchy (gRPC status in brackets)::

    InvalidArgument [INVALID_ARGUMENT]
    └── MissingVariables        required template variables not given (templates.py); names them all
    Unavailable [UNAVAILABLE]
    ├── ProviderUnreachable     transient provider trouble outlived the in-call retries; for a submit,
    │   │                       nothing was accepted and the submission was released for a later call
    │   └── ProviderBusy        the trouble was the provider refusing for now (429, its own "busy"
    │                           envelope): a submit is held back (PENDING) until its Retry-After
    └── KeyRefused              a poll was refused for the API key (401/402/403 or the profile's
                                http_errors.key_refused_codes): the task may still run, so the caller
                                polls again until its deadline instead of failing it
    FailedPrecondition [FAILED_PRECONDITION]
    └── SubmitOutcomeUnknown    a submit was sent but its answer was lost or was a 408/5xx ("outcome
        │                       unknown at <provider>"), or an earlier call's claim is older than any
        │                       submit takes (it died mid-flight); never resent, the ledger entry kept
        └── CallbackAwaited     the same, for a submit that carried our callback URL: the provider, if
                                it has the task, calls back about it, so the caller waits for that
    Aborted [ABORTED]
    └── SubmissionInProgress    another call is sending this submission now (its claim is young);
                                the caller retries later and then gets its recorded outcome

Also raised as they are: NotFound (catalog lookups), AlreadyExists (names), FailedPrecondition (an
API key that no longer decrypts). A provider that answers "no" is not an error: the call returns a
TaskStatus in state FAILED with the provider's own message.
"""

from __future__ import annotations

from assetgen_runtime.errors import Aborted, FailedPrecondition, Unavailable

__all__ = [
    "CallbackAwaited",
    "KeyRefused",
    "ProviderBusy",
    "ProviderUnreachable",
    "SubmissionInProgress",
    "SubmitOutcomeUnknown",
]


class ProviderUnreachable(Unavailable):
    """The provider could not be reached or kept answering with transient errors."""


class ProviderBusy(ProviderUnreachable):
    """The provider kept refusing for now (429, its own busy envelope); ``retry_after`` is its hint."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class KeyRefused(Unavailable):
    """The provider refused the API key on a poll (rotated, expired, out of credit); the task it
    runs is not failed for that: it is polled again, and fails only at its deadline, naming this."""


class SubmitOutcomeUnknown(FailedPrecondition):
    """A submit was sent but what came back (nothing, a 408 or 5xx) does not say whether the task exists."""

    # The orchestrator keeps the attempt's cost reserved for an operator on this reason.
    reason = "OUTCOME_UNKNOWN"


class CallbackAwaited(SubmitOutcomeUnknown):
    """An unknown submit outcome whose request carried the callback URL naming the asset attempt:
    the orchestrator keeps the asset in flight until that callback adopts the task or the deadline
    passes, instead of failing it at once (and again completing it when the callback comes)."""

    reason = "OUTCOME_UNKNOWN_CALLBACK_AWAITED"


class SubmissionInProgress(Aborted):
    """Another call claimed this submission moments ago and may still be sending it; retry later."""
