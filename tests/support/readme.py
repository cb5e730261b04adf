"""Code examples from README.md, run as written (so the documentation is what the tests use)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def python_example(heading: str) -> dict[str, Any]:
    """Runs the first ```python block after ``heading`` in README.md and returns the names it defines."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(heading) :]
    start = section.index("```python\n") + len("```python\n")
    code = section[start : section.index("\n```", start)]
    namespace: dict[str, Any] = {}
    exec(compile(code, f"README.md ({heading.lstrip('# ')})", "exec"), namespace)
    return namespace


def readme_receiver() -> dict[str, Any]:
    """The webhook receiver example: ``SECRET``, ``verify``, ``receive`` and ``app``."""
    return python_example("### Receiving webhooks")
