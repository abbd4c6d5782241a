"""Shared test support: fixtures (registered as pytest plugins by tests/conftest.py),
synthetic inputs and small helpers. Synthetic ids and values only, never patient data."""

from pathlib import Path

TEST_DATA = Path(__file__).resolve().parent.parent / "data"
