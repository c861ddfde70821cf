"""Function matching for the label-free recipe (``demo.label_free``): augmented views that teacher
and student share, and ``distill(epoch_views=...)`` training on a fresh view set each epoch.

Small shapes and a few SGD steps of the real Lite0 at 56 px: seconds on one CPU thread.
"""

from __future__ import annotations

import pytest
import torch

from demo import label_free as rf
from reskd_infer.train import trainer


def _crops(n: int = 6, size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 255, size).expand(size, size)  # left-right ramp: flips and crops change it
    noise = torch.randint(0, 60, (n, 3, size, size), generator=g).float()
    return (0.75 * ramp + noise).clamp(0, 255).to(torch.uint8)


def test_views_are_deterministic_per_seed_and_keep_shape_and_dtype():
    crops = _crops()
    a, b, c = rf.augment_views(crops, 3), rf.augment_views(crops, 3), rf.augment_views(crops, 4)
    assert a.shape == crops.shape and a.dtype == torch.uint8
    assert torch.equal(a, b)  # same seed, same views
    assert not torch.equal(a, c) and not torch.equal(a, crops)  # another seed, other views; not the input
    f = rf.augment_views(crops.float(), 3)
    assert f.dtype == torch.float32 and f.shape == crops.shape
    assert (f - a.float()).abs().max() <= 0.5 + 1e-4  # the uint8 views are the float views rounded


def test_full_crop_without_flip_is_the_input_and_flip_mirrors_it():
    crops = _crops()
    assert torch.equal(rf.augment_views(crops, 0, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=0.0), crops)
    assert torch.equal(rf.augment_views(crops, 0, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=1.0), crops.flip(-1))


def test_mixup_blends_two_views_and_keeps_the_boxes_of_the_seed():
    crops = _crops()
    plain = rf.augment_views(crops, 5)
    mixed = rf.augment_views(crops, 5, mixup=1.0)
    assert mixed.shape == crops.shape and mixed.dtype == torch.uint8
    assert torch.equal(mixed, rf.augment_views(crops, 5, mixup=1.0))
    assert not torch.equal(mixed, plain)
    # Every mixed view lies between the plain views (pixel-wise within the min/max of all frames' views).
    lo, hi = plain.min(0).values, plain.max(0).values
    assert bool(((mixed >= lo) & (mixed <= hi)).all())
    assert torch.equal(rf.augment_views(crops, 5, mixup=0.0), plain)


def test_teacher_views_hold_the_teachers_outputs_on_the_very_views():
    crops = _crops(4)
    calls: list[torch.Tensor] = []

    class Probe(torch.nn.Module):  # a stand-in teacher recording what it is fed
        def forward_features(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(x.clone())
            return x.mean(dim=(2,), keepdim=False)[:, :, :7, :7]

        def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
            return feats.flatten(1)[:, :10]

    sets = rf.teacher_views(Probe(), crops, [1, 2])
    assert len(sets) == 2
    for (views, maps, logits), seed in zip(sets, [1, 2], strict=True):
        assert torch.equal(views, rf.augment_views(crops, seed))
        assert maps is not None and len(maps) == len(logits) == len(crops)
    # The teacher saw exactly the stored views at 224 px, through the runtime's ops.
    assert torch.equal(calls[0], rf.prepare(sets[0][0].float(), rf.TEACHER_SIZE))
    assert rf.teacher_views(Probe(), crops, [1], want_maps=False)[0][1] is None


def _student_inputs(monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    """Every batch the student is fed through the trainer's input function (its calibration pass included)."""
    seen: list[torch.Tensor] = []
    real = trainer.model_input

    def spy(x: torch.Tensor, spec) -> torch.Tensor:
        seen.append(x.squeeze(2).clone())  # one-frame clips (N, 3, 1, H, W) -> frames
        return real(x, spec)

    monkeypatch.setattr(trainer, "model_input", spy)
    return seen


def test_distill_trains_on_another_view_set_each_epoch(monkeypatch: pytest.MonkeyPatch):
    torch.set_num_threads(1)
    n, batch = 4, 2
    base = torch.full((n, 3, 64, 64), 200, dtype=torch.uint8)
    sets = [(torch.full((n, 3, 64, 64), 40 * (k + 1), dtype=torch.uint8), None, torch.randn(n, 1000))
            for k in range(3)]
    seen = _student_inputs(monkeypatch)
    _, info = rf.distill(56, base, None, torch.randn(n, 1000), epochs=4, batch_size=batch, lr=1e-4,
                         progress=False, feature_weight=0.0, epoch_views=sets)
    assert info["view_set_per_epoch"] == [0, 1, 2, 0]
    train = seen[-4 * (n // batch):]  # after the calibration's pass over the base crops
    assert torch.equal(seen[0], base.float())  # the logit scale is calibrated on the base crops
    values = [int(x.unique().item()) for x in train]
    assert values == [40, 40, 80, 80, 120, 120, 40, 40]


def test_distill_with_the_base_views_as_its_only_set_is_the_plain_run():
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(1)
    crops = torch.randint(0, 256, (4, 3, 64, 64), generator=g, dtype=torch.uint8)
    maps, logits = torch.randn(4, 1280, 1, 7, 7, generator=g).half(), torch.randn(4, 1000, generator=g)
    kw = {"epochs": 2, "batch_size": 2, "lr": 1e-3, "progress": False}
    plain, _ = rf.distill(56, crops, maps, logits, **kw)
    viewed, info = rf.distill(56, crops, maps, logits, epoch_views=[(crops, maps, logits)], **kw)
    assert info["view_set_per_epoch"] == [0, 0]
    for (name, a), b in zip(plain.state_dict().items(), viewed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="maps"):
        rf.distill(56, crops, None, logits, **kw)  # the feature term needs maps
    with pytest.raises(ValueError, match="view set"):
        rf.distill(56, crops, maps, logits, epoch_views=[(crops[:2], None, logits[:2])], **kw)
