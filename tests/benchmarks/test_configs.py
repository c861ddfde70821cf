"""Every benchmark variant under benchmarks/configs names a base benchmark that exists and changes only
options that base has (a typo in a config fails here, not an hour into a run)."""

import argparse
import importlib
from pathlib import Path

import pytest
import yaml

from benchmarks.common import load_config, parse_with_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "benchmarks" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_names_a_base_and_a_delta_it_can_run(path):
    config = yaml.safe_load(path.read_text())
    base = importlib.import_module(config["_base_"])
    assert callable(base.main)
    assert set(config) - {"_base_"} <= {"args", "selection"}, "a config holds only its base and the delta"
    if "args" in config:  # the options exist: the base's own parser accepts them as defaults
        args = base.parse_args(["--config", str(path)])
        assert all(getattr(args, k) == v for k, v in config["args"].items())
    if "selection" in config:
        assert config["selection"]


def test_parse_with_config_refuses_another_base_and_unknown_options(tmp_path):
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("_base_: benchmarks.speed.e2e\nargs: {seeds: '1'}\n")
    with pytest.raises(SystemExit):
        load_config(wrong, "benchmarks.accuracy.trend")
    typo = tmp_path / "typo.yaml"
    typo.write_text("_base_: here\nargs: {no_such_option: 1}\n")
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0")
    with pytest.raises(SystemExit):
        parse_with_config(parser, ["--config", str(typo)], "here")
    good = tmp_path / "good.yaml"
    good.write_text("_base_: here\nargs: {seeds: '5,6'}\n")
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0")
    args = parse_with_config(parser, ["--config", str(good)], "here")
    assert args.seeds == "5,6" and args.config["_base_"] == "here"
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0")
    assert parse_with_config(parser, ["--config", str(good), "--seeds", "9"], "here").seeds == "9"  # command line wins
