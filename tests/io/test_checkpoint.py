import pickle

import pytest
import torch

from reskd_infer import ModelSpec, build_model, load_checkpoint, save_checkpoint
from reskd_infer.errors import CheckpointError, ReskdError
from reskd_infer.io.checkpoint import read_checkpoint, spec_from_checkpoint


@pytest.fixture
def spec():
    return ModelSpec(arch="tsn_r18", class_names=["a", "b"], input_size=32, num_frames=2,
                     provenance={"dataset": "unit"})


def test_round_trip_keeps_weights_and_spec(tmp_path, spec):
    model = build_model(spec)
    path = save_checkpoint(model, spec, tmp_path / "m.ckpt")
    loaded, loaded_spec = load_checkpoint(path)
    assert loaded_spec == spec and loaded_spec.provenance == {"dataset": "unit"}
    assert spec_from_checkpoint(path) == spec
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert not loaded.training
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary file


def test_weights_only_torch_checkpoints_load(tmp_path, spec):
    model = build_model(spec)
    torch.save({"spec": spec.to_json(), "state_dict": model.state_dict()}, tmp_path / "m.pt")
    _, loaded_spec = load_checkpoint(tmp_path / "m.pt")
    assert loaded_spec == spec


class _Payload:
    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(_Payload.marker),))


def test_checkpoint_carrying_code_is_refused_and_the_code_never_runs(tmp_path, spec):
    marker = tmp_path / "code_ran"
    _Payload.marker = str(marker)
    evil = tmp_path / "evil.ckpt"
    torch.save({"spec": spec.to_json(), "state_dict": {}, "payload": _Payload()}, evil)
    with pytest.raises(CheckpointError, match="evil.ckpt.*refused") as info:
        load_checkpoint(evil)
    assert isinstance(info.value, ReskdError)
    assert not marker.exists()
    # and a raw pickle (not even a torch zip) is refused the same way
    raw = tmp_path / "raw.ckpt"
    raw.write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)
    assert not marker.exists()


def test_broken_checkpoints_raise_checkpoint_error(tmp_path, spec):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.ckpt")
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="garbage.ckpt"):
        load_checkpoint(garbage)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "nospec.ckpt"))
    with pytest.raises(CheckpointError, match="no model spec"):
        read_checkpoint(tmp_path / "nospec.ckpt")
    other = ModelSpec(arch="r3d_18", class_names=["a", "b"])
    save_checkpoint(build_model(spec), other, tmp_path / "mismatch.ckpt")
    with pytest.raises(CheckpointError, match="do not fit r3d_18"):
        load_checkpoint(tmp_path / "mismatch.ckpt")


def test_checkpoint_files_get_the_usual_permissions(tmp_path):
    import os

    from reskd_infer import ModelSpec, build_model, save_checkpoint

    spec = ModelSpec(arch="tsn_r18", class_names=["a", "b"], input_size=32, num_frames=2)
    path = save_checkpoint(build_model(spec), spec, tmp_path / "m.ckpt")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
