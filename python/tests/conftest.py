"""Shared fixtures: the tacit command and the test data of the C++ tests.

Run by ctest (python_tests) with PYTHONPATH, TACIT_CLI and TACIT_TEST_DATA
set; a missing one fails the run rather than skipping tests."""

import os
import pathlib
import subprocess

import numpy as np
import pytest


def _required_env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run the Python tests through ctest "
                    f"(python_tests), which sets it", pytrace=False)
    return value


@pytest.fixture(scope="session")
def cli():
    path = pathlib.Path(_required_env("TACIT_CLI"))
    if not path.is_file():
        pytest.fail(f"TACIT_CLI={path}: no such file", pytrace=False)
    return path


@pytest.fixture(scope="session")
def data_dir():
    path = pathlib.Path(_required_env("TACIT_TEST_DATA"))
    if not (path / "onnx").is_dir():
        pytest.fail(f"TACIT_TEST_DATA={path}: no onnx fixtures there", pytrace=False)
    return path


@pytest.fixture
def run_cli(cli):
    """Runs the command; returns its CompletedProcess (fails on a crash)."""
    def run(*args, check=True):
        result = subprocess.run([str(cli), *map(str, args)], capture_output=True, text=True)
        if check and result.returncode != 0:
            pytest.fail(f"tacit {' '.join(map(str, args))} exited {result.returncode}: "
                        f"{result.stderr}")
        return result
    return run


def read_rows(path, dtype=np.float64):
    """A file of vectors, one per line (the command's format)."""
    rows = [line.split() for line in pathlib.Path(path).read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    return np.array([[float(v) for v in row] for row in rows], dtype=dtype)


def write_rows(path, a):
    with open(path, "w") as f:
        for row in np.atleast_2d(a):
            f.write(" ".join(repr(float(v)) for v in row) + "\n")
