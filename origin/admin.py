"""The admin token: who may read ``/api``, ``/events``, ``/metrics`` and the dashboard.

A request is an operator's when it carries ``Authorization: Bearer <token>``
(scripts, Prometheus' ``bearer_token``) or the dashboard's session cookie. The
dashboard trades the token for that cookie once (``POST /login``): HttpOnly
(page scripts never see it), ``SameSite=Strict`` (no other site's page can
send it), ``Secure`` over HTTPS. The cookie is an HMAC of its expiry under the
token, so it needs no server-side state and dies when the token changes.
Refusals are counted per peer address (:class:`RefusalThrottle`): a peer
guessing tokens is answered 429 without a comparison until its window passes.
Pure decisions over the header values; the caller passes the time.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from enum import Enum

from packager.ingest.throttle import RefusalThrottle

COOKIE = "lp_admin"
SESSION_S = 12 * 3600
REFUSAL_LIMIT = 20  # refused attempts from one address within REFUSAL_WINDOW_S ...
REFUSAL_WINDOW_S = 10.0  # ... after which it is answered 429 until the window passes


class Verdict(Enum):
    ALLOWED = "allowed"
    REFUSED = "refused"  # 401
    THROTTLED = "throttled"  # 429


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header (scheme case-insensitive, RFC 6750 §2.1)."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


@dataclass
class AdminGuard:
    token: str = field(repr=False)
    throttle: RefusalThrottle = field(default_factory=lambda: RefusalThrottle(REFUSAL_LIMIT, REFUSAL_WINDOW_S))

    def _mac(self, expires: int) -> str:
        return hmac.new(self.token.encode(), f"admin-session:{expires}".encode(), hashlib.sha256).hexdigest()

    def session(self, now: float) -> str:
        """A new session cookie value, valid for :data:`SESSION_S`."""
        expires = int(now) + SESSION_S
        return f"{expires}.{self._mac(expires)}"

    def _session_ok(self, value: str | None, now: float) -> bool:
        expires_s, _, mac = (value or "").partition(".")
        if not expires_s.isdigit() or len(expires_s) > 12 or int(expires_s) <= now:
            return False
        return hmac.compare_digest(mac, self._mac(int(expires_s)))

    def token_ok(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self.token.encode())

    def check(self, peer: str, authorization: str | None, cookie: str | None, now: float) -> Verdict:
        """The verdict on one request; a refusal is counted against ``peer``."""
        if self.throttle.blocked(peer, now):
            return Verdict.THROTTLED
        if self.token_ok(bearer(authorization)) or self._session_ok(cookie, now):
            return Verdict.ALLOWED
        self.refused(peer, now)
        return Verdict.REFUSED

    def refused(self, peer: str, now: float) -> None:
        if peer:
            self.throttle.refused(peer, now)
