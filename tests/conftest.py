"""Shared tiny datasets: a phantom of a few videos, generated once per test session."""

import shutil

import pytest

from echolite.data.phantom import synthesize

N_PHANTOM = 12  # enough for 9 TRAIN / 1-2 VAL / 1-2 TEST videos


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("phantom"), N_PHANTOM, seed=3)


@pytest.fixture
def phantom_copy(phantom_root, tmp_path):
    """A private, writable copy of the phantom (for tests that break it)."""
    return shutil.copytree(phantom_root, tmp_path / "data")
