"""`coarse-loftr serve` option handling (the running server is exercised by the load,
browser and fuzz tests, which start it through this command)."""

from __future__ import annotations

from coarse_loftr.commands import main


def test_missing_weights_is_one_clear_line(tmp_path, capsys):
    assert main(["serve", "--weights", str(tmp_path / "absent.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("coarse-loftr serve: error:") and "absent.onnx" in err
    assert "\n" not in err and "Traceback" not in err


def test_invalid_setting_is_one_clear_line(random_student_onnx, capsys):
    assert main(["serve", "--weights", str(random_student_onnx), "--queue-size", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "queue_size" in err and "Traceback" not in err
