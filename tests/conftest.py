"""Shared fixtures: one tiny synthetic city per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

TINY = {"n_districts": 12, "days": 6, "seed": 3}


@pytest.fixture(scope="session")
def tiny_city():
    """A 12-district, 6-day synthetic city (do not mutate it)."""
    from datasets import make_city

    return make_city(**TINY)


@pytest.fixture(scope="session")
def tiny_city_dir(tiny_city, tmp_path_factory):
    """The tiny city saved as a City folder."""
    return tiny_city.save(tmp_path_factory.mktemp("cities") / "tiny")
