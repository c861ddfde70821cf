import pytest
import torch
from torchvision.models import resnet18
from torchvision.models.video import r2plus1d_18 as tv_r2plus1d_18

from reskd_infer import ModelSpec, build_model, list_archs
from reskd_infer.errors import CheckpointError
from reskd_infer.models.tsn import TemporalShift

CORE_ARCHS = ["tsn_r18", "tsn_r50", "tsm_r50", "r3d_18", "mc3_18", "r2plus1d_18", "swin3d_t"]


def test_the_zoo_lists_the_issue_architectures():
    assert set(CORE_ARCHS) <= set(list_archs())
    assert "s3d" not in list_archs()  # its fixed pooling kernel fails below 224 px


@pytest.mark.parametrize("size", [112, 64])
@pytest.mark.parametrize("arch", list_archs())
def test_every_architecture_runs_at_low_resolution(arch, size):
    spec = ModelSpec(arch=arch, class_names=["a", "b", "c"], input_size=size, num_frames=4)
    model = build_model(spec).eval()
    x = torch.randn(2, 3, 4, size, size)
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model.forward_head(features)
        assert torch.allclose(model(x), logits, atol=1e-5)
    assert features.dim() == 5 and features.shape[0] == 2 and features.shape[1] == model.feature_dim
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    assert model.classifier().out_features == 3


def test_temporal_shift_moves_channels_between_frames_out_of_place():
    shift = TemporalShift(num_frames=3, fold_div=4)
    x = torch.arange(2 * 3 * 8, dtype=torch.float32).reshape(2 * 3, 8, 1, 1)
    before = x.clone()
    y = shift(x).reshape(2, 3, 8)
    v = before.reshape(2, 3, 8)
    assert torch.equal(x, before)  # input untouched
    assert torch.equal(y[:, :2, :2], v[:, 1:, :2]) and torch.equal(y[:, 2, :2], torch.zeros(2, 2))
    assert torch.equal(y[:, 1:, 2:4], v[:, :2, 2:4]) and torch.equal(y[:, 0, 2:4], torch.zeros(2, 2))
    assert torch.equal(y[:, :, 4:], v[:, :, 4:])


def test_tsm_differs_from_tsn_only_by_the_shift():
    # The same weights in TSN-R50 and TSM-R50: with the shift emptied (no channel moves) the two networks
    # give the same output; with TSM's 1/8 + 1/8 shift they differ, and only TSM notices time reversed.
    torch.manual_seed(0)
    spec = ModelSpec(arch="tsn_r50", class_names=["a", "b"], num_frames=4, input_size=32)
    tsn, tsm = build_model(spec).eval(), build_model(spec.replace(arch="tsm_r50")).eval()
    tsn_state = tsn.state_dict()
    tsm.load_state_dict({k: tsn_state[k.replace(".conv1.conv.", ".conv1.")] for k in tsm.state_dict()})
    shifts = [m for m in tsm.modules() if isinstance(m, TemporalShift)]
    assert len(shifts) == 16  # every residual block of ResNet-50
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        for m in shifts:
            m.fold_div = 10**6  # fold = channels // fold_div = 0: nothing moves
        assert torch.allclose(tsm(x), tsn(x), atol=1e-5)
        for m in shifts:
            m.fold_div = 8
        assert not torch.allclose(tsm(x), tsn(x), atol=1e-4)
        assert torch.allclose(tsn(x.flip(2)), tsn(x), atol=1e-5)  # TSN averages frames: order-blind
        assert not torch.allclose(tsm(x.flip(2)), tsm(x), atol=1e-4)


def test_local_torchvision_weights_load_into_tsn(tmp_path):
    source = resnet18(weights=None)
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    model = build_model(ModelSpec(arch="tsn_r18", class_names=["a", "b"]), weights=tmp_path / "resnet18.pth")
    assert torch.equal(model.trunk[0].weight, source.conv1.weight)
    assert torch.equal(model.trunk[7][1].conv2.weight, source.layer4[1].conv2.weight)
    shifted = build_model(ModelSpec(arch="tsm_r50", class_names=["a"]))  # TSM wraps conv1: names still map
    from torchvision.models import resnet50

    r50 = resnet50(weights=None)
    torch.save(r50.state_dict(), tmp_path / "r50.pth")
    from reskd_infer.models import load_pretrained_weights

    with pytest.warns(UserWarning, match="class count"):
        untouched = load_pretrained_weights(shifted, tmp_path / "r50.pth")
    assert torch.equal(shifted.trunk[4][0].conv1.conv.weight, r50.layer1[0].conv1.weight)
    assert untouched == ["head.fc.bias", "head.fc.weight"]


def test_local_video_weights_load_and_wrong_weights_are_refused(tmp_path):
    source = tv_r2plus1d_18(weights=None, num_classes=3)
    torch.save(source.state_dict(), tmp_path / "r21d.pth")
    spec = ModelSpec(arch="r2plus1d_18", class_names=["a", "b", "c"])
    model = build_model(spec, weights=tmp_path / "r21d.pth")
    assert torch.equal(model.head.fc.weight, source.fc.weight)  # same class count: the head loads too
    with pytest.raises(CheckpointError, match="r21d.pth.*match"):
        build_model(ModelSpec(arch="tsn_r18", class_names=["a"]), weights=tmp_path / "r21d.pth")
    with pytest.raises(CheckpointError, match="not found"):
        build_model(spec, weights=tmp_path / "nope.pth")


def test_tsm_lite0_shifts_every_residual_block_and_takes_tsn_lite0s_weights():
    # The shift has no parameters: TSM-Lite0's state dict is TSN-Lite0's key for key (so the ImageNet weights
    # load strictly). With the shift emptied the two give the same output; with it only TSM notices time reversed.
    torch.manual_seed(0)
    spec = ModelSpec(arch="tsn_effnet_lite0", class_names=["a", "b"], num_frames=4, input_size=32)
    tsn, tsm = build_model(spec).eval(), build_model(spec.replace(arch="tsm_effnet_lite0")).eval()
    assert tsm.state_dict().keys() == tsn.state_dict().keys()
    tsm.load_state_dict(tsn.state_dict(), strict=True)
    blocks = list(tsm.trunk._blocks)
    shifts = [b.shift for b in blocks if b.shift is not None]
    assert len(shifts) == sum(b.use_residual for b in blocks) == 9  # Lite0's 16 blocks, 9 with a shortcut
    assert all(isinstance(m, TemporalShift) and m.num_frames == 4 for m in shifts)
    x = torch.randn(1, 3, 4, 32, 32)
    # Compared on the feature maps: an untrained Lite0's logits are too small to show the difference.
    with torch.no_grad():
        for m in shifts:
            m.fold_div = 10**6
        assert torch.allclose(tsm.forward_features(x), tsn.forward_features(x), atol=1e-5)
        for m in shifts:
            m.fold_div = 8
        tsm_maps, tsn_maps = tsm.forward_features(x), tsn.forward_features(x)
        assert (tsm_maps - tsn_maps).abs().max() > 1e-2 * tsn_maps.abs().max()
        assert torch.allclose(tsn.forward_features(x.flip(2)), tsn_maps.flip(2), atol=1e-5)  # per frame: order-blind
        assert (tsm.forward_features(x.flip(2)) - tsm_maps.flip(2)).abs().max() > 1e-2 * tsm_maps.abs().max()


def test_imagenet_weights_load_into_tsm_lite0():
    from reskd_infer.models.efficientnet_lite import imagenet_state_dict, load_imagenet_weights

    model = load_imagenet_weights(build_model(ModelSpec(arch="tsm_effnet_lite0", class_names=["a", "b"],
                                                        num_frames=2, input_size=32)))
    state = imagenet_state_dict()
    assert torch.equal(model.trunk._blocks[5]._depthwise_conv.weight, state["_blocks.5._depthwise_conv.weight"])
    assert torch.equal(model.trunk._conv_head.weight, state["_conv_head.weight"])
