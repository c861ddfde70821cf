"""``reskd-export --int8`` refuses a family measured not to pay on CPUs without VNNI, before quantizing anything.

The refused set is data (``reskd_infer.export.int8.INT8_NOT_PAYING``) taken from the committed per-family
measurement; the refusal test puts tsn_r18 in it for the run, so it exercises the path whatever the table holds.
"""

import json
from pathlib import Path

import pytest
import torch

from reskd_infer import ModelSpec, build_model, save_checkpoint
from reskd_infer.cli.export import main as export_main
from reskd_infer.errors import EXIT_REFUSED
from reskd_infer.export import int8 as int8_module
from reskd_infer.io.artifacts import read_manifest

ROOT = Path(__file__).resolve().parents[2]


def test_the_refused_set_is_the_committed_measurement():
    """Every family measured under PAYS_MIN_SPEEDUP is refused with its figure, and no other."""
    rows = json.loads((ROOT / int8_module.FAMILIES_RESULTS).read_text())["rows"]
    measured = {r["arch"]: r["speedup_vs_fp32"] for r in rows if r["speedup_vs_fp32"] < int8_module.PAYS_MIN_SPEEDUP}
    assert int8_module.INT8_NOT_PAYING == measured


@pytest.mark.skipif(int8_module.has_vnni(), reason="the refusal holds on CPUs without VNNI, where it was measured")
def test_a_family_that_does_not_pay_is_refused_before_quantizing(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(int8_module.INT8_NOT_PAYING, "tsn_r18", 0.87)
    spec = ModelSpec(arch="tsn_r18", class_names=["a", "b"], input_size=32, num_frames=2)
    torch.manual_seed(0)
    ckpt = save_checkpoint(build_model(spec), spec, tmp_path / "r18.ckpt")
    calib = tmp_path / "calib.txt"
    calib.write_text("no_such_video.mp4\n")  # read or decoded, it would fail: the refusal comes first
    out = tmp_path / "out"
    code = export_main(["--student", str(ckpt), "-o", str(out), "--no-real-clips", "--quiet", "--int8",
                        "--calib", str(calib), "--json"])
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert code == EXIT_REFUSED == 3
    assert doc["error"]["type"] == "Int8RefusedError"
    line = [x for x in captured.err.splitlines() if x.startswith("error:")]
    assert len(line) == 1 and "tsn_r18: INT8 not exported" in line[0] and "0.87x FP32" in line[0]
    assert int8_module.FAMILIES_RESULTS in line[0]
    # Nothing INT8 was made; the FP32 and FP16 models were written, verified and listed.
    assert not (out / "model.int8.onnx").exists() and not (out / "openvino").exists()
    manifest = read_manifest(out)
    assert {"onnx", "onnx_fp16"} <= set(manifest["artifacts"])
    assert not any("int8" in kind for kind in manifest["artifacts"])
    assert manifest["int8"]["refused"].startswith("tsn_r18: INT8 not exported")
    assert doc["passed"] is True
