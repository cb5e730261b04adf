"""Validate MPDs against the ISO/IEC 23009-1 schema, offline.

The schema ships with the tests, in ``tests/schemas/dash`` (sources and
licence in ``SOURCES.md`` and ``LICENSE`` there). ``DASH-MPD.xsd`` imports
the W3C xlink schema by URL, which imports ``xml.xsd`` by URL; an lxml
resolver maps both URLs to the local copies under ``w3c/``, and the parser
never touches the network. The compiled schema is cached.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from lxml import etree

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas" / "dash"
SCHEMA_PATH = SCHEMA_DIR / "DASH-MPD.xsd"

# Remote schema locations -> local copies.
LOCAL_COPIES = {
    "http://www.w3.org/XML/2008/06/xlink.xsd": SCHEMA_DIR / "w3c" / "xlink.xsd",
    "http://www.w3.org/2001/xml.xsd": SCHEMA_DIR / "w3c" / "xml.xsd",
}


class _LocalResolver(etree.Resolver):
    """Serves the W3C schemas the DASH schema imports from local files."""

    def resolve(self, system_url: str, public_id: str | None, context: object) -> object | None:
        local = LOCAL_COPIES.get(system_url)
        if local is not None:
            return self.resolve_filename(str(local), context)
        return None


@lru_cache(maxsize=1)
def mpd_schema() -> etree.XMLSchema:
    """The compiled MPD schema (parsed once per process)."""
    if not SCHEMA_PATH.is_file():
        raise FileNotFoundError(f"MPD schema not found at {SCHEMA_PATH}")
    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(_LocalResolver())
    doc = etree.parse(str(SCHEMA_PATH), parser)
    return etree.XMLSchema(doc)


def validate_mpd(xml_bytes: bytes) -> etree._Element:
    """Parse ``xml_bytes`` and validate it; raises AssertionError listing every schema error."""
    root = etree.fromstring(xml_bytes, etree.XMLParser(no_network=True, resolve_entities=False))
    schema = mpd_schema()
    if not schema.validate(root):
        errors = "\n".join(f"line {e.line}: {e.message}" for e in schema.error_log)
        raise AssertionError(f"MPD is not valid against {SCHEMA_PATH.name}:\n{errors}")
    return root
