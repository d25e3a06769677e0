"""The NATS users table: the server's authorization block and each service's URL."""

from __future__ import annotations

from assetgen_dev.nats_users import NatsUser, authorization_config, url_for
from assetgen_runtime.jetstream import redact_url


def test_each_user_gets_its_password_and_permissions() -> None:
    config = authorization_config([NatsUser("gateway", "pw-1"), NatsUser("orchestrator", "pw-2")])
    gateway = next(line for line in config.splitlines() if '"gateway"' in line)
    assert 'password: "pw-1"' in gateway and '"_INBOX.>"' in gateway
    assert "assetgen.jobs" not in gateway and "$JS.API.STREAM.DELETE" not in gateway
    orchestrator = next(line for line in config.splitlines() if '"orchestrator"' in line)
    assert '"assetgen.jobs.>"' in orchestrator and '"$JS.API.>"' in orchestrator


def test_every_server_of_a_url_gets_the_credentials_and_logs_never_show_the_password() -> None:
    url = url_for("nats://a:4222, nats://b:4222", NatsUser("gateway", "s3cret"))
    assert url == "nats://gateway:s3cret@a:4222,nats://gateway:s3cret@b:4222"
    assert redact_url(url) == "nats://gateway:***@a:4222,nats://gateway:***@b:4222"
    assert redact_url("nats://a:4222") == "nats://a:4222"
