"""Garment x motion clips: decodable lists, disjoint items and backgrounds per split, partners that are time reversals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from demo.assets import fashion_mnist
from demo.motion_clips import (
    DEFAULT_MOTIONS,
    SPLIT_PHOTOS,
    _load_photo,
    class_names,
    main,
    make_motion_clips,
    render_motion_clip,
)
from reskd_infer import ModelSpec, build_model
from reskd_infer.errors import DatasetError
from reskd_infer.train.data import parse_list, read_classes
from reskd_infer.video import probe, read_frames

DATA = Path(__file__).resolve().parents[2] / "data"
GARMENTS = ("sandal", "sneaker")


@pytest.fixture(scope="module")
def data_dir() -> Path:
    if not (DATA / "fashion-mnist" / "t10k-images-idx3-ubyte.gz").is_file() or not (DATA / "photos").is_dir():
        pytest.fail(f"Fashion-MNIST or the photos are missing from {DATA}: run `make data` (make test does it)")
    return DATA


@pytest.fixture(scope="module")
def clips(tmp_path_factory, data_dir) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("motion")
    info = make_motion_clips(out, data_dir, GARMENTS, DEFAULT_MOTIONS, per_class_train=1, per_class_val=1,
                             per_class_test=1, frames=4, seed=3)
    return out, info


def test_lists_parse_clips_decode_and_labels_name_garment_and_motion(clips):
    out, info = clips
    names = read_classes(out / "classes.txt")
    assert names == class_names(GARMENTS, DEFAULT_MOTIONS) == info["classes"] and len(names) == 8
    assert names[1] == "sandal/anticlockwise" and names[6] == "sneaker/approaching"
    for list_file, split in (("train.txt", "train"), ("val.txt", "val"), ("test_fresh.txt", "test")):
        samples = parse_list(out / list_file, out)
        assert sorted(s.labels[0] for s in samples) == list(range(8))
        for s in samples:
            garment, motion = names[s.labels[0]].split("/")
            assert s.path.parent.name == f"{garment}_{motion}" and s.path.parts[-3] == split
    first = parse_list(out / "train.txt", out)[0].path
    assert probe(first).num_frames == 4
    assert read_frames(first, [0, 3]).shape == (2, 112, 112, 3)


def test_splits_share_no_item_and_no_background_photo(clips, data_dir):
    out, _ = clips
    manifest = json.loads((out / "manifest.json").read_text())["clips"]
    by_split = {s: [c for c in manifest if c["split"] == s] for s in ("train", "val", "test")}
    assert {c["source_split"] for c in by_split["train"]} == {"train"}
    assert {c["source_split"] for c in by_split["val"] + by_split["test"]} == {"test"}
    assert not {c["source_index"] for c in by_split["val"]} & {c["source_index"] for c in by_split["test"]}
    for split, rows in by_split.items():
        assert {c["background"] for c in rows} <= set(SPLIT_PHOTOS[split])
    photos = [set(p) for p in SPLIT_PHOTOS.values()]
    assert not (photos[0] & photos[1]) and not (photos[0] & photos[2]) and not (photos[1] & photos[2])
    assert not {"opencv/aero1.jpg", "opencv/aero3.jpg"} & set().union(*photos)  # the twin aerial shots: unused
    _, labels = fashion_mnist("test", data_dir)
    assert all(labels[c["source_index"]] == (5 if c["class"].startswith("sandal") else 7) for c in by_split["test"])


def test_each_motion_is_its_partner_played_backwards_so_only_order_separates_them(data_dir):
    image = fashion_mnist("test", data_dir)[0][0]
    background = _load_photo("opencv/baboon.jpg", data_dir)
    for forward, backward in (("clockwise", "anticlockwise"), ("approaching", "receding")):
        clip, info = render_motion_clip(image, background, forward, np.random.default_rng(5), frames=6)
        reverse, _ = render_motion_clip(image, background, backward, np.random.default_rng(5), frames=6)
        assert np.array_equal(reverse, clip[::-1]) and not np.array_equal(reverse, clip)
        assert info["motion"] == forward
    # An order-blind network (TSN averages frames) gives a clip and its partner the same scores; TSM does not.
    x = torch.from_numpy(clip.copy()).permute(3, 0, 1, 2)[None].float() / 255.0
    spec = ModelSpec(arch="tsn_effnet_lite0", class_names=["a", "b"], num_frames=6, input_size=112)
    torch.manual_seed(0)
    tsn, tsm = build_model(spec).eval(), build_model(spec.replace(arch="tsm_effnet_lite0")).eval()
    with torch.no_grad():
        assert torch.allclose(tsn.forward_features(x).mean((2, 3, 4)), tsn.forward_features(x.flip(2)).mean((2, 3, 4)),
                              atol=1e-5)
        tsm_a, tsm_b = tsm.forward_features(x).mean((2, 3, 4)), tsm.forward_features(x.flip(2)).mean((2, 3, 4))
        assert (tsm_a - tsm_b).abs().max() > 1e-3 * tsm_a.abs().max()


def test_same_seed_same_clips_and_bad_requests_are_refused(clips, data_dir, tmp_path, capsys):
    out, _ = clips
    again = tmp_path / "again"
    make_motion_clips(again, data_dir, GARMENTS, DEFAULT_MOTIONS, 1, 1, 1, frames=4, seed=3)
    assert (again / "manifest.json").read_text() == (out / "manifest.json").read_text()
    with pytest.raises(DatasetError, match="motions"):
        make_motion_clips(tmp_path / "x", data_dir, GARMENTS, ("clockwise", "sideways"), 1, 1, 1)
    with pytest.raises(DatasetError, match="unknown Fashion-MNIST classes"):
        make_motion_clips(tmp_path / "y", data_dir, ("sandal", "hat"), DEFAULT_MOTIONS, 1, 1, 1)
    assert main(["--out", str(tmp_path / "z"), "--data-dir", str(data_dir), "--garments", "hat"]) == 2
    assert "hat" in capsys.readouterr().err
