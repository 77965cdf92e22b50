"""The README's tutorial (tools/tutorial.py) runs and does what it says."""

import os
import pathlib
import subprocess
import sys

import pytest

import tacit

TUTORIAL = pathlib.Path(__file__).resolve().parents[2] / "tools" / "tutorial.py"
FASHION = pathlib.Path("/usr/share/datasets/fashion-mnist")


def test_tutorial_runs(tmp_path, data_dir):
    if not FASHION.is_dir():
        pytest.fail(f"{FASHION} is missing: install the Debian package dataset-fashion-mnist",
                    pytrace=False)
    result = subprocess.run(
        [sys.executable, str(TUTORIAL), "--model", str(data_dir / "fashion" / "fashion_mlp.onnx"),
         "--data", str(FASHION), "--count", "100", "--out", str(tmp_path)],
        capture_output=True, text=True, env=os.environ.copy())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line[:2] for line in lines if line[:1].isdigit()] == ["1.", "2.", "2.", "3.", "4."]
    exported = tmp_path / "pruned.onnx"
    assert exported.is_file()
    assert tacit.import_onnx(exported).inputs <= 784
