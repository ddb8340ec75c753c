"""Password hashing (bcrypt via the passlib API) and JWTs (joserfc, HS256)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from uuid import UUID

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from joserfc.jwt import JWTClaimsRegistry
from passlib.context import CryptContext


class PasswordHasher:
    def __init__(self, rounds: int = 12) -> None:
        self._context = CryptContext(schemes=["bcrypt"], bcrypt__rounds=rounds)
        # Verified against when the e-mail is unknown, so both cases take as long.
        self._decoy = self._context.hash("flowviz-decoy-password")

    def hash(self, password: str) -> str:
        return self._context.hash(password)

    def verify(self, password: str, password_hash: str | None) -> bool:
        try:
            return self._context.verify(password, password_hash or self._decoy) and bool(
                password_hash
            )
        except (ValueError, TypeError):
            return False

    def spend_time(self) -> None:
        self.verify("x", None)


@dataclass(frozen=True)
class TokenClaims:
    user_id: UUID
    role: str
    email: str


class InvalidToken(Exception):
    pass


class TokenService:
    ALGORITHM = "HS256"
    LEEWAY_SECONDS = 5
    # Every request presents its token, and checking one costs ~40 us of Python (a fifth
    # of a traceability request); a client presents the same token for hours.
    MAX_REMEMBERED = 10_000

    def __init__(self, secret: str, expire_minutes: int) -> None:
        self._key = OctKey.import_key(secret)
        self._expire_seconds = expire_minutes * 60
        self._registry = JWTClaimsRegistry(
            exp={"essential": True}, sub={"essential": True}, leeway=self.LEEWAY_SECONDS
        )
        # Tokens whose signature and claims passed, with their expiry: still checked.
        self._verified: dict[str, tuple[TokenClaims, float]] = {}

    def issue(self, user_id: UUID, role: str, email: str) -> str:
        now = int(time.time())
        claims = {
            "sub": str(user_id),
            "role": role,
            "email": email,
            "iat": now,
            "exp": now + self._expire_seconds,
        }
        return jwt.encode({"alg": self.ALGORITHM, "typ": "JWT"}, claims, self._key)

    def verify(self, token: str) -> TokenClaims:
        remembered = self._verified.get(token)
        if remembered is not None:
            claims, expires = remembered
            if time.time() <= expires + self.LEEWAY_SECONDS:  # the registry's own rule
                return claims
            self._verified.pop(token, None)
        try:
            decoded = jwt.decode(token, self._key, algorithms=[self.ALGORITHM])
            self._registry.validate(decoded.claims)
            raw = decoded.claims
            claims = TokenClaims(
                user_id=UUID(str(raw["sub"])),
                role=str(raw["role"]),
                email=str(raw.get("email", "")),
            )
            expires = float(raw["exp"])
        # A malformed token may fail anywhere in parsing; every failure means "not valid".
        except (JoseError, KeyError, ValueError, TypeError, UnicodeError) as e:
            raise InvalidToken(str(e)) from None
        if len(self._verified) >= self.MAX_REMEMBERED:
            self._verified.clear()
        self._verified[token] = (claims, expires)
        return claims
