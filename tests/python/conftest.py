"""pytest setup for kiln's Python tests: opens libkiln.so from $KILN_LIB.

Run: KILN_LIB=build/libkiln.so python -m pytest -q tests/python
"""

import os

import numpy as np
import pytest

import kiln_ctypes


def pytest_configure(config):
    path = os.environ.get("KILN_LIB")
    if not path:
        raise pytest.UsageError(
            "KILN_LIB is not set. Build kiln (cmake --build BUILD --target kiln) and run "
            "KILN_LIB=BUILD/libkiln.so python -m pytest tests/python")
    if not os.path.isfile(path):
        raise pytest.UsageError(f"KILN_LIB={path}: no such file (build the kiln target first)")
    try:
        kiln_ctypes.load_library(path)
    except OSError as e:
        raise pytest.UsageError(f"KILN_LIB={path}: cannot load: {e}")


def pytest_report_header(config):
    try:
        return f"kiln {kiln_ctypes.version()} from {os.environ.get('KILN_LIB')}"
    except Exception:
        return None


@pytest.fixture
def rng(request):
    """A generator seeded from the test's id, so every case is reproducible alone."""
    seed = sum(ord(c) * (i + 1) for i, c in enumerate(request.node.nodeid)) % (2**32)
    return np.random.default_rng(seed)
