"""Makes the repository root importable for tests (``tests.support``, ``fixtures``)."""
