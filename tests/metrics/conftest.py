"""Fixtures of the metric tests."""

from __future__ import annotations

import pytest

from tests.metrics.tiny import fake_scorer, tiny_clap_embedder


@pytest.fixture(scope="session")
def tiny_clap():
    return tiny_clap_embedder()


@pytest.fixture
def scorer():
    return fake_scorer
