"""Which web origins may read the origin's answers: ``*``, or an exact list echoed back with ``Vary: Origin``.

Pure decisions (the request's ``Origin`` header in, the header value out) so
every handler, error answer and preflight agrees. With a list, an answer that
allows one origin is cached per origin downstream (``Vary: Origin``), and an
answer to a page on another origin carries no ``Access-Control-Allow-Origin``
at all: the browser then keeps it from that page.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CorsPolicy:
    origins: tuple[str, ...] = ("*",)  # "*" alone, or lower-case scheme://host[:port] values

    @property
    def any(self) -> bool:
        return self.origins == ("*",)

    def allow(self, origin: str | None) -> str | None:
        """The ``Access-Control-Allow-Origin`` value for a request from ``origin``; None: do not allow."""
        if self.any:
            return "*"
        if origin is not None and origin.lower() in self.origins:
            return origin
        return None

    def preflight_allowed(self, origin: str | None) -> bool:
        """A preflight is answered (204) only for an allowed origin; others get 403."""
        return self.allow(origin) is not None
