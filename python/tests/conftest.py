"""Shared fixtures: the repository's demo assets and the `m2` command (the CLI the wheel's
results are compared with). M2_BIN names the binary (.ci/python.sh builds it); without it the
tests that compare with the CLI are skipped."""

import os
import pathlib
import shutil

import numpy as np
import pytest

import m2

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEMO = ROOT / "assets" / "demo"


@pytest.fixture(scope="session")
def blob_path():
    return DEMO / "demo-int8.m2"


@pytest.fixture(scope="session")
def model(blob_path):
    return m2.Model(str(blob_path))


@pytest.fixture(scope="session")
def features():
    return np.load(DEMO / "test_features.npy")


@pytest.fixture(scope="session")
def scenes():
    return np.load(DEMO / "test_scenes.npy")


@pytest.fixture(scope="session")
def m2_bin():
    path = os.environ.get("M2_BIN") or shutil.which("m2")
    if not path:
        pytest.skip("M2_BIN is not set (the m2 command to compare with)")
    return path
