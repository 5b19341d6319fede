"""The command line's error contract, for every subcommand: a bad input prints one line,
`coarse-loftr NAME: error: ...`, and exits with status 2; never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from coarse_loftr.commands import SUBCOMMANDS

#: subcommand -> arguments that must fail (paths under the test's empty folder).
BAD_INPUTS: dict[str, list[str]] = {
    "match": ["{tmp}/missing_a.png", "{tmp}/missing_b.png"],
    "export-onnx": ["--weights", "{tmp}/missing.pt", "--out", "{tmp}/m.onnx"],
    "quantize": ["{tmp}/missing.onnx", "--out", "{tmp}/q.onnx"],
    "build-engine": ["{tmp}/missing.onnx"],
    "bench": ["--weights", "{tmp}/missing.onnx", "--pairs", "1"],
    "eval": ["{tmp}/missing.json"],
    "train": ["--images", "{tmp}/no_photos", "--run-dir", "{tmp}/run", "--pairs", "8"],
    "plot-training": ["{tmp}/no_run"],
    "release": ["{tmp}/missing.pt", "--out", "{tmp}/weights"],
    "serve": ["--weights", "{tmp}/missing.onnx", "--port", "1"],
    "match-pairs": ["{tmp}/no_images", "--pairs", "{tmp}/missing.txt", "--out", "{tmp}/out"],
    "plot-frontier": ["{tmp}/missing.json", "--out", "{tmp}/f.png"],
    "make-val-set": ["{tmp}/no_photos", "--out", "{tmp}/val"],
}


def test_every_subcommand_has_a_bad_input_case():
    assert set(SUBCOMMANDS) <= set(BAD_INPUTS), set(SUBCOMMANDS) - set(BAD_INPUTS)


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_bad_input_is_one_line_and_status_2(name, tmp_path):
    args = [arg.format(tmp=tmp_path) for arg in BAD_INPUTS[name]]
    result = subprocess.run(
        [sys.executable, "-m", "coarse_loftr", name, *args], capture_output=True, text=True, timeout=120
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(lines) == 1 and lines[0].startswith(f"coarse-loftr {name}: error: "), result.stderr


def test_a_missing_extra_is_named_in_one_line(tmp_path):
    """`quantize` without ONNX installed (blocked here) names the extra to install."""
    code = (
        "import sys; sys.modules['onnx'] = None\n"
        "from coarse_loftr.commands import main\n"
        f"sys.exit(main(['quantize', '{tmp_path}/m.onnx', '--out', '{tmp_path}/q.onnx']))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "coarse-loftr quantize: error: needs onnx: pip install 'coarse-loftr[quantize]'"
    )
