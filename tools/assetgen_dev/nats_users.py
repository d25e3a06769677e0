"""NATS users, one per service that talks to NATS, with the subjects each may publish and subscribe.

Only the orchestrator publishes jobs and events and manages streams and consumers. The gateway only
follows events: it reads the events stream's state and last messages and opens (and deletes) its
own ordered consumers on it, delivered to its inboxes. Neither storage nor the provider-adapter uses
NATS. ``deploy/components/in-cluster-dependencies`` writes the same table for Kubernetes (a unit
test compares them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["EVENTS_STREAM", "PERMISSIONS", "NatsUser", "authorization_config", "url_for"]

EVENTS_STREAM = "ASSETGEN_EVENTS"

# user → (may publish, may subscribe)
PERMISSIONS: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "orchestrator": (
        (
            "assetgen.jobs.>",
            "assetgen.events.>",
            "$JS.API.>",  # streams, consumers, pull requests
            "$JS.ACK.>",  # acks, naks and progress of job deliveries
            "$JS.FC.>",
            "_INBOX.>",
        ),
        ("_INBOX.>", "assetgen.>"),
    ),
    "gateway": (
        (
            f"$JS.API.STREAM.INFO.{EVENTS_STREAM}",
            f"$JS.API.STREAM.MSG.GET.{EVENTS_STREAM}",
            f"$JS.API.DIRECT.GET.{EVENTS_STREAM}.>",
            f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}",
            f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}.>",
            f"$JS.API.CONSUMER.INFO.{EVENTS_STREAM}.>",
            f"$JS.API.CONSUMER.DELETE.{EVENTS_STREAM}.>",
            "$JS.FC.>",  # flow control answers of ordered consumers
        ),
        ("_INBOX.>",),
    ),
}


@dataclass(frozen=True)
class NatsUser:
    """A NATS user and its password."""

    name: str
    password: str


def authorization_config(users: Sequence[NatsUser]) -> str:
    """A nats-server ``authorization`` block giving each user the permissions of :data:`PERMISSIONS`."""
    entries = []
    for user in users:
        publish, subscribe = PERMISSIONS[user.name]
        entries.append(
            f"    {{user: {json.dumps(user.name)}, password: {json.dumps(user.password)}, permissions: {{"
            f"publish: {{allow: {json.dumps(list(publish))}}}, "
            f"subscribe: {{allow: {json.dumps(list(subscribe))}}}}}}}"
        )
    return "authorization {\n  users: [\n" + ",\n".join(entries) + "\n  ]\n}\n"


def url_for(url: str, user: NatsUser) -> str:
    """``nats://host:port`` (or a comma-separated list of them) with ``user``'s credentials in each."""
    return ",".join(
        part.strip().replace("://", f"://{user.name}:{user.password}@", 1)
        for part in url.split(",")
        if part.strip()
    )
