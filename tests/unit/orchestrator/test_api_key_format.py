"""The API key format: agk_<key id>_<secret>, stored as the secret's SHA-256 only."""

from __future__ import annotations

import hashlib

from assetgen_orchestrator.apikeys import KEY_PREFIX, mint_key, parse_key, secret_hash, secret_matches


def test_a_minted_key_parses_back_to_its_id_and_matches_only_its_hash() -> None:
    key_id, key, stored = mint_key()
    assert key.startswith(f"{KEY_PREFIX}{key_id}_") and key_id.startswith("key_")
    parsed = parse_key(key)
    assert parsed is not None and parsed[0] == key_id
    secret = parsed[1]
    assert stored == hashlib.sha256(secret.encode()).hexdigest() == secret_hash(secret)
    assert secret not in stored
    assert secret_matches(secret, stored)
    assert not secret_matches(secret[:-1] + ("0" if secret[-1] != "0" else "1"), stored)


def test_keys_are_random() -> None:
    assert len({mint_key()[1] for _ in range(50)}) == 50


def test_anything_else_is_not_a_key() -> None:
    _, key, _ = mint_key()
    for text in (
        "",
        "agk_",
        "Bearer x",
        key[len(KEY_PREFIX) :],
        key[:-1],
        f"agk_nokey_{'a' * 64}",
        key + "0",
    ):
        assert parse_key(text) is None, text
