"""A short run of the load test (`python -m coarse_loftr.api.loadtest`) against a real uvicorn process."""

from __future__ import annotations

import pytest
from fixture_data import CLIP, PAIRS

from coarse_loftr.api import loadtest


@pytest.mark.slow
def test_short_load_run(random_student_onnx, capsys):
    report = loadtest.main(
        [
            "--weights",
            str(random_student_onnx),
            "--pair",
            str(PAIRS / "0001_a.jpg"),
            str(PAIRS / "0001_b.jpg"),
            "--video",
            str(CLIP),
            "--clients",
            "2",
            "--streams",
            "2",
            "--seconds",
            "20",
            "--requests",
            "12",
            "--stream-frames",
            "6",
            "--threads",
            "1",
            "--queue-size",
            "4",
            "--baseline",
            "--repeats",
            "3",
            "--json",
        ]
    )
    assert '"match"' in capsys.readouterr().out
    match = report["match"]
    assert match["completed"] + match["busy_503"] == 12 and match["errors"] == 0
    assert match["completed"] >= 1 and match["p99_ms"] >= match["p50_ms"] > 0
    for name in ("stream0", "stream1"):
        stream = report[name]
        # Both streams were served (neither starved), each frame answered in turn.
        assert stream["frames_sent"] == 6 and stream["completed"] + stream["busy_503"] == 6
        assert stream["errors"] == 0 and stream["completed"] >= 1 and stream["dropped"] == 0
        assert stream["overlays"] == stream["completed"]  # every result got its overlay
    bare = report["bare_matcher"]
    assert bare["video_fps"] > 0 and bare["before"]["match_p50_ms"] > 0 and bare["after"]["video_fps"] > 0
    assert report["vs_bare"]["match_p50_vs_bare"] == pytest.approx(
        match["p50_ms"] / bare["match_p50_ms"], abs=1e-3
    )
    assert set(report["vs_bare"]) == {"match_p50_vs_bare", "stream0_fps_vs_bare", "stream1_fps_vs_bare"}
    assert report["server_rss_mb_after"] > 0 and report["server_rss_mb_before"] > 0
