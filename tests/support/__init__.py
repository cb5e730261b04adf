"""Shared test helpers (no test cases): hand-built stream views, live drivers, output checks, schemas."""
