"""Fuzzing the video-opening path: the inputs earlier fuzz runs found, and a few seconds of new mutants.

``make fuzz`` runs the same fuzzer for minutes (tests/helpers/fuzzing.py)."""

from pathlib import Path

import pytest
from fuzzing import fuzz, seed_videos

from reskd_infer import ModelSpec, Recognizer, build_model, save_checkpoint
from reskd_infer.errors import UnreadableVideoError
from reskd_infer.video import load_clips, probe

REGRESSIONS = sorted((Path(__file__).parent / "fuzz_regressions").iterdir())
SPECS = [ModelSpec(arch="tsn_r18", class_names=["a"], input_size=16, num_frames=3),
         ModelSpec(arch="r3d_18", class_names=["a"], input_size=16, num_frames=4, frame_interval=3, num_clips=2)]


def _unreadable(path) -> bool:
    """True if some spec's load_clips raises UnreadableVideoError naming the file (any other exception fails)."""
    failed = False
    for spec in SPECS:
        try:
            load_clips(path, spec)
        except UnreadableVideoError as exc:
            assert path.name in str(exc)
            failed = True
    return failed


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.name for p in REGRESSIONS])
def test_fuzz_regressions_give_frames_or_a_clean_error(path):
    """Each file made PyAV raise something else than a ReskdError under the first decoder (found by
    tests/helpers/fuzzing.py). Now each gives frames or an UnreadableVideoError naming it: the issue-8 decoder
    reads fewer_frames_on_second_pass.mkv correctly (it decodes once, numbering frames by timestamp)."""
    try:
        probe(path)
    except UnreadableVideoError as exc:
        assert path.name in str(exc)
    _unreadable(path)


def test_fuzz_regressions_through_the_cli(tmp_path, capsys):
    from reskd_infer.cli.predict import main as predict_main

    spec = SPECS[0]
    ckpt = save_checkpoint(build_model(spec), spec, tmp_path / "m.ckpt")
    failing = sum(_unreadable(p) for p in REGRESSIONS)
    assert failing >= 1
    assert predict_main([str(ckpt), *map(str, REGRESSIONS)]) == 1
    err = capsys.readouterr().err
    assert err.count("\tERROR\t") == failing and "Traceback" not in err
    with Recognizer(ckpt) as rec:
        assert len(rec.predict_batch([], topk=1)) == 0


def test_a_few_seconds_of_fuzzing_find_no_crash_hang_or_escaped_exception(tmp_path):
    report = fuzz(seed_videos(tmp_path / "seeds"), seconds=6.0, seed=1234, timeout=60.0, out_dir=tmp_path / "out")
    assert report.inputs >= 20, report.to_dict()
    assert report.failures == [], report.to_dict()
    assert report.ok > 0 and report.clean_errors > 0  # mutants of both kinds were tried
