"""Who may call what: the scope table, scope arithmetic, watch tokens and limits per key."""

from __future__ import annotations

import pytest

from assetgen_gateway.access import REQUIRED_SCOPE, Caller, authorized
from assetgen_gateway.limits import PerKeyLimit
from assetgen_gateway.routes import GATEWAY_SERVICE
from assetgen_gateway.watch_tokens import WatchTokenSigner
from assetgen_runtime.errors import InvalidArgument, PermissionDenied, RateLimited, Unauthenticated
from assetgen_runtime.scopes import Scope, grants, parse_scopes


def test_every_rpc_of_the_gateway_service_has_exactly_one_required_scope() -> None:
    assert set(REQUIRED_SCOPE) == {method.name for method in GATEWAY_SERVICE.methods}


def test_projects_keys_providers_and_model_changes_need_admin() -> None:
    for rpc in REQUIRED_SCOPE:
        if rpc.endswith(("Project", "Projects", "ApiKey", "ApiKeys", "Provider", "Providers")):
            assert REQUIRED_SCOPE[rpc] is Scope.ADMIN, rpc
    assert {REQUIRED_SCOPE[rpc] for rpc in ("CreateModel", "UpdateModel", "DeleteModel")} == {Scope.ADMIN}
    assert REQUIRED_SCOPE["ListModels"] is Scope.READ and REQUIRED_SCOPE["Generate"] is Scope.WRITE


def test_write_includes_read_and_admin_includes_everything() -> None:
    assert grants(["read"], Scope.READ) and not grants(["read"], Scope.WRITE)
    assert (
        grants(["write"], Scope.READ)
        and grants(["write"], Scope.WRITE)
        and not grants(["write"], Scope.ADMIN)
    )
    assert all(grants(["admin"], scope) for scope in Scope)
    assert not grants([], Scope.READ) and not grants(["root"], Scope.READ)


def test_scopes_given_to_a_key_are_checked() -> None:
    assert parse_scopes(["Write", "read", "read"]) == (Scope.READ, Scope.WRITE)
    with pytest.raises(InvalidArgument, match="unknown scope 'root'"):
        parse_scopes(["root"])
    with pytest.raises(InvalidArgument, match="required"):
        parse_scopes([])


def test_authorized_refuses_a_missing_scope_and_confines_watch_tokens() -> None:
    reader = Caller(key_id="key_r", project="prj_a", scopes=("read",))
    with authorized(reader, "GetBox"):
        pass
    with pytest.raises(PermissionDenied, match="write scope"), authorized(reader, "CreateBox"):
        pass
    watcher = Caller(key_id="key_r", project="prj_a", scopes=("read",), watch_box="box_1")
    with pytest.raises(PermissionDenied), authorized(watcher, "GetBox"):
        pass
    assert reader.reach == "prj_a"
    assert Caller(key_id="key_a", project="prj_a", scopes=("admin",)).reach == ""


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_watch_token_is_valid_for_its_box_until_it_expires() -> None:
    clock = Clock()
    signer = WatchTokenSigner(b"secret", 900, clock=clock)
    token, expires_at = signer.issue("box_1", "prj_a", "key_1")
    assert expires_at == clock.now + 900
    grant = signer.verify(token, "box_1")
    assert (grant.box_id, grant.project, grant.key_id) == ("box_1", "prj_a", "key_1")
    with pytest.raises(Unauthenticated, match="another box"):
        signer.verify(token, "box_2")
    clock.now += 899
    signer.verify(token, "box_1")
    clock.now += 1
    with pytest.raises(Unauthenticated, match="expired"):
        signer.verify(token, "box_1")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        lambda token: token.replace("wt1.", "wt2.", 1),
        lambda token: "wt1.e30." + token.rpartition(".")[2],
        lambda token: "garbage",
        lambda token: "wt1.!!!.???",
        lambda token: "",
    ],
)
def test_a_tampered_or_foreign_watch_token_is_refused(mangle) -> None:  # type: ignore[no-untyped-def]
    token, _ = WatchTokenSigner(b"secret", 60).issue("box_1", "prj_a", "key_1")
    with pytest.raises(Unauthenticated, match="invalid watch token"):
        WatchTokenSigner(b"secret", 60).verify(mangle(token), "box_1")


def test_a_watch_token_of_another_secret_is_refused() -> None:
    token, _ = WatchTokenSigner(b"one", 60).issue("box_1", "prj_a", "key_1")
    with pytest.raises(Unauthenticated):
        WatchTokenSigner(b"two", 60).verify(token, "box_1")
    with pytest.raises(ValueError):
        WatchTokenSigner(b"", 60)


def test_a_key_holds_at_most_its_limit_at_once() -> None:
    limit = PerKeyLimit("open watches", 2, "ASSETGEN_MAX_WATCHERS_PER_KEY")
    with limit.hold("a"), limit.hold("a"):
        with pytest.raises(RateLimited, match="at most 2, ASSETGEN_MAX_WATCHERS_PER_KEY"), limit.hold("a"):
            pass
        with limit.hold("b"):
            assert (limit.held("a"), limit.held("b")) == (2, 1)
    assert limit.held("a") == 0
    with limit.hold("a"):
        pass
