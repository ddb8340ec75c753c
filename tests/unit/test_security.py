"""Tokens and password hashes: what a forged, expired or mangled credential gets."""

import time
from uuid import uuid4

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey

from api.security import InvalidToken, PasswordHasher, TokenService

SECRET = "unit-test-secret-" + "Qw3rTy9!" * 4


def test_a_token_carries_the_user_and_role_it_was_issued_for():
    tokens = TokenService(SECRET, expire_minutes=5)
    user_id = uuid4()
    claims = tokens.verify(tokens.issue(user_id, "OPERATOR", "op@plant.example"))
    assert (claims.user_id, claims.role, claims.email) == (user_id, "OPERATOR", "op@plant.example")


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "x" * 5000])
def test_malformed_tokens_are_invalid_not_errors(token):
    with pytest.raises(InvalidToken):
        TokenService(SECRET, 5).verify(token)


def test_a_token_signed_with_another_key_is_rejected():
    forged = TokenService("another-secret-" + "Zx8!" * 8, 5).issue(uuid4(), "ADMIN", "a@b.c")
    with pytest.raises(InvalidToken):
        TokenService(SECRET, 5).verify(forged)


def test_an_expired_token_is_rejected():
    key = OctKey.import_key(SECRET)
    past = int(time.time()) - 3600
    claims = {"sub": str(uuid4()), "role": "ADMIN", "iat": past - 60, "exp": past}
    expired = jwt.encode({"alg": "HS256"}, claims, key)
    with pytest.raises(InvalidToken):
        TokenService(SECRET, 5).verify(expired)


def test_a_token_accepted_before_is_refused_once_it_expires(monkeypatch):
    """Accepted tokens are remembered so that each request skips the signature check,
    but never past their expiry."""
    key = OctKey.import_key(SECRET)
    now = time.time()
    claims = {"sub": str(uuid4()), "role": "ADMIN", "iat": int(now), "exp": int(now) + 60}
    token = jwt.encode({"alg": "HS256"}, claims, key)
    tokens = TokenService(SECRET, 5)
    assert tokens.verify(token).role == "ADMIN"
    assert tokens.verify(token).role == "ADMIN"  # remembered

    monkeypatch.setattr(time, "time", lambda: now + 60 + TokenService.LEEWAY_SECONDS + 1)
    with pytest.raises(InvalidToken):
        tokens.verify(token)


def test_a_tampered_copy_of_an_accepted_token_is_still_rejected():
    tokens = TokenService(SECRET, 5)
    token = tokens.issue(uuid4(), "VIEWER", "v@plant.example")
    tokens.verify(token)
    header, payload, signature = token.split(".")
    promoted = jwt.encode({"alg": "HS256"}, {"sub": str(uuid4()), "role": "ADMIN", "exp": 2**31},
                          OctKey.import_key("x" * 64)).split(".")[1]
    resigned = ("B" if signature[0] != "B" else "C") + signature[1:]
    for forged in (f"{header}.{promoted}.{signature}", f"{header}.{payload}.{resigned}"):
        with pytest.raises(InvalidToken):
            tokens.verify(forged)


def test_a_token_without_expiry_is_rejected():
    key = OctKey.import_key(SECRET)
    eternal = jwt.encode({"alg": "HS256"}, {"sub": str(uuid4()), "role": "ADMIN"}, key)
    with pytest.raises(InvalidToken):
        TokenService(SECRET, 5).verify(eternal)


def test_passwords_verify_only_against_their_own_bcrypt_hash():
    hasher = PasswordHasher(rounds=4)
    stored = hasher.hash("correct horse")
    assert stored.startswith("$2b$04$")
    assert hasher.verify("correct horse", stored)
    assert not hasher.verify("wrong horse", stored)
    assert not hasher.verify("correct horse", None)
    assert not hasher.verify("correct horse", "not-a-hash")
