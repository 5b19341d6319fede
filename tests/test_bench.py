"""`coarse-loftr bench` end to end on one pair (real ONNX Runtime, real OpenCV)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from coarse_loftr.commands import main
from coarse_loftr.inference import Matcher
from coarse_loftr.inference.benchmark import (
    TimedMethod,
    bench_matcher,
    load_pairs,
    synthetic_pair,
    time_interleaved,
)

PHASES = {"preprocess", "inference", "postprocess", "total"}


def test_bench_json_on_one_pair(capsys):
    code = main(
        [
            "bench",
            "--preset",
            "student",
            "--seed-baseline",
            "--pairs",
            "1",
            "--repeat",
            "1",
            "--sizes",
            "320x240",
            "--backends",
            "onnxruntime",
            "--threads",
            "1",
            "--json",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert {"source", "pairs", "repeat", "threads", "rows"} <= set(report)
    assert report["pairs"] == 1 and report["threads"] == 1
    rows = {(row["method"], row["size"]): row for row in report["rows"]}
    # The shipped model is always timed, beside what the options add; each of ours also
    # as a stream's frame, whose image0 the matcher holds (split graphs).
    models = {("shipped", "320x240"), ("student (random init)", "320x240"), ("seed baseline", "640x480")}
    assert set(rows) == models | {(f"{m}, stream frame", s) for m, s in models} | {
        ("ORB", "320x240"),
        ("SIFT", "320x240"),
    }
    for method, size in models:
        whole, frame = rows[(method, size)], rows[(f"{method}, stream frame", size)]
        assert frame["matches"] == whole["matches"]  # the same pair, the same matches
        assert 0 < frame["gflops"] < whole["gflops"]
    for row in rows.values():
        assert set(row["median_ms"]) == set(row["p90_ms"]) == PHASES
        assert row["samples"] == 1
        assert row["median_ms"]["total"] >= row["median_ms"]["inference"] > 0
        assert row["fps"] == 1e3 / row["median_ms"]["total"]
    student, seed = rows[("student (random init)", "320x240")], rows[("seed baseline", "640x480")]
    assert student["backend"].startswith("onnxruntime")
    assert 1 < student["gflops"] < 10 and student["gflops_per_s"] > 0
    assert "coarse_loftr_trt" in seed["note"] and seed["gflops"] > 1
    assert rows[("ORB", "320x240")]["gflops"] is None and rows[("ORB", "320x240")]["matches"] > 0
    # The overlay's cost per 640x480 pair, on the first model's matches.
    drawing = report["drawing"]
    assert drawing["size"] == "640x480" and drawing["samples"] == 1
    assert drawing["p90_ms"] >= drawing["median_ms"] > 0 and 0 < drawing["drawn"] <= 200


def test_bench_times_the_rotation_search_beside_the_plain_model(capsys):
    args = ["bench", "--pairs", "1", "--repeat", "1", "--sizes", "320x240", "--peers", "none"]
    assert main([*args, "--backends", "onnxruntime", "--threads", "1", "--rotations", "--json"]) == 0
    rows = {row["method"]: row for row in json.loads(capsys.readouterr().out)["rows"]}
    assert set(rows) == {"shipped", "shipped + rotation search", "shipped, stream frame"}
    plain, searched = rows["shipped"], rows["shipped + rotation search"]
    frame = rows["shipped, stream frame"]
    # image0's half once, then four turns of the frame graph; the two halves are the whole.
    reference = searched["gflops"] - 4 * frame["gflops"]
    assert 0 < reference < frame["gflops"] and reference + frame["gflops"] == pytest.approx(
        plain["gflops"], rel=0.05
    )
    assert searched["size"] == plain["size"] == "320x240" and searched["matches"] > 0


def test_bench_refuses_unknown_backend(capsys):
    assert main(["bench", "--preset", "student", "--backends", "openvino", "--pairs", "1"]) == 2
    assert "unknown backend 'openvino'" in capsys.readouterr().err


def test_synthetic_pairs_without_shared_data(tmp_path):
    pairs, source = load_pairs(2, tmp_path / "nothing-here")
    assert source.startswith("synthetic") and len(pairs) == 2
    again = synthetic_pair(1)
    np.testing.assert_array_equal(pairs[1].image1, again.image1)  # deterministic
    assert pairs[0].image0.shape == (480, 640) and pairs[0].image0.std() > 20


def test_methods_take_turns_pair_by_pair():
    pairs = [synthetic_pair(seed, (64, 48)) for seed in range(2)]
    calls: list[tuple[str, str]] = []

    def method(name: str, matches: int) -> TimedMethod:
        def once(pair):
            calls.append((name, pair.name))
            return {phase: 1.0 + len(calls) for phase in PHASES}, matches

        return TimedMethod(once, name, "test", (64, 48))

    rows = time_interleaved([method("a", 3), method("b", 5)], pairs, repeat=2)
    warm_up, timed = calls[:2], calls[2:]
    assert warm_up == [("a", "synthetic-0"), ("b", "synthetic-0")]
    # A slow spell of the machine would fall on both methods, not on one of them.
    assert timed == [(m, p.name) for _ in range(2) for p in pairs for m in ("a", "b")]
    assert [(row.method, row.samples, row.matches) for row in rows] == [("a", 4, 3.0), ("b", 4, 5.0)]
    assert rows[0].median_ms["total"] < rows[1].median_ms["total"]  # each row has its own samples


def test_bench_sessions_do_not_spin_between_turns():
    """The methods take turns, so a session left spinning would take the next one's
    cores: the bench's sessions, whole and split, are made with spinning off, where a
    `Matcher` made directly keeps ONNX Runtime's default."""
    key = "session.intra_op.allow_spinning"
    timed = bench_matcher(None, "onnxruntime", (320, 240), 1, image0_cache=1)
    direct = Matcher(backend="onnxruntime", size=(320, 240), num_threads=1)
    try:
        sessions = [timed.backend.session, timed.backend.reference_session, timed.backend.frame_session]
        assert all(session is not None for session in sessions)
        assert {session.get_session_options().get_session_config_entry(key) for session in sessions} == {"0"}
        with pytest.raises(RuntimeError, match="does not have configuration"):
            direct.backend.session.get_session_options().get_session_config_entry(key)  # the default
    finally:
        timed.close()
        direct.close()
