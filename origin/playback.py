"""Signed playback: whether a request's JWT lets it fetch a stream's manifests and media.

A token is a JWT (RFC 7519) checked with PyJWT against one kind of key: an
HMAC secret (HS256/384/512), a PEM public key (RS*/PS* for RSA, ES* for EC),
or a JWK Set (the token's ``kid`` picks the key). It must carry ``exp`` and a
``stream`` claim (a stream name, or ``*`` for all); ``nbf`` is honoured when
present. The signature is checked once per token (kept in a small cache); the
times are checked on every request against the injectable clock, so a token
stops working the second it expires. A refusal is a :class:`Refusal`: 401 for
a missing, malformed, unsigned or expired token, 403 for a valid token for
another stream. Reasons never quote the token.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from packager.security import PlaybackKeys

HMAC_ALGORITHMS = ["HS256", "HS384", "HS512"]
RSA_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
EC_ALGORITHMS = ["ES256", "ES384", "ES512"]
CACHE_TOKENS = 4096
MAX_TOKEN = 4096  # characters; a longer "token" is refused unread


@dataclass(frozen=True)
class Refusal:
    status: int  # 401 or 403
    reason: str  # one line, never the token


@dataclass(frozen=True)
class Grant:
    stream: str  # a stream name or "*"
    exp: float
    nbf: float | None


def _public_key_algorithms(pem: str) -> tuple[Any, list[str]]:
    key = load_pem_public_key(pem.encode())
    if isinstance(key, rsa.RSAPublicKey):
        return key, RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key, EC_ALGORITHMS
    raise ValueError("the playback public key must be an RSA or EC key")


class PlaybackAuth:
    """Checks playback tokens; the event loop owns it (the cache is not shared with threads)."""

    def __init__(self, keys: PlaybackKeys, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._jwks = jwt.PyJWKSet.from_json(keys.jwks) if keys.jwks else None
        if keys.public_key:
            self._key, self._algorithms = _public_key_algorithms(keys.public_key)
        else:
            self._key, self._algorithms = keys.secret, HMAC_ALGORITHMS
        self._grants: OrderedDict[str, Grant | Refusal] = OrderedDict()

    def check(self, token: str | None, stream: str) -> Refusal | None:
        """None when ``token`` may fetch ``stream`` now, else why not."""
        if not token:
            return Refusal(401, "a playback token is required (?token= or Authorization: Bearer)")
        grant = self._grant(token)
        if isinstance(grant, Refusal):
            return grant
        now = self.clock()
        if now >= grant.exp:
            return Refusal(401, "the playback token has expired")
        if grant.nbf is not None and now < grant.nbf:
            return Refusal(401, "the playback token is not valid yet")
        if grant.stream not in ("*", stream):
            return Refusal(403, "the playback token is for another stream")
        return None

    def _grant(self, token: str) -> Grant | Refusal:
        hit = self._grants.get(token)
        if hit is None:
            hit = self._decode(token)
            self._grants[token] = hit
            if len(self._grants) > CACHE_TOKENS:
                self._grants.popitem(last=False)
        return hit

    def _decode(self, token: str) -> Grant | Refusal:
        if len(token) > MAX_TOKEN:
            return Refusal(401, "the playback token is too long")
        try:
            key, algorithms = self._key_for(token)
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_aud": False},
            )
        except jwt.InvalidSignatureError:
            return Refusal(401, "the playback token's signature does not verify")
        except jwt.InvalidAlgorithmError:
            return Refusal(401, "the playback token is signed with an algorithm this server does not accept")
        except (jwt.PyJWTError, ValueError):
            return Refusal(401, "the playback token is malformed")
        return _claims(claims)

    def _key_for(self, token: str) -> tuple[Any, list[str]]:
        if self._jwks is None:
            return self._key, self._algorithms
        kid = jwt.get_unverified_header(token).get("kid")
        keys = [k for k in self._jwks.keys if kid is None or k.key_id == kid]
        if not keys or (kid is None and len(self._jwks.keys) > 1):
            raise jwt.InvalidKeyError("no key in the JWKS matches the token's kid")
        jwk = keys[0]
        return jwk.key, [jwk.algorithm_name]


def _claims(claims: dict[str, Any]) -> Grant | Refusal:
    stream, exp, nbf = claims.get("stream"), claims.get("exp"), claims.get("nbf")
    if not isinstance(stream, str) or not stream:
        return Refusal(401, "the playback token has no stream claim")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return Refusal(401, "the playback token has no exp claim")
    if nbf is not None and (isinstance(nbf, bool) or not isinstance(nbf, int | float)):
        return Refusal(401, "the playback token's nbf claim is not a time")
    return Grant(stream, float(exp), float(nbf) if nbf is not None else None)
