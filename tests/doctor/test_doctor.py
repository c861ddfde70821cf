"""reskd-doctor on this machine: on a machine without a GPU every GPU check is skipped with its reason and
the CPU checks run for real (a small student, ONNX Runtime's CPU provider, the plan fallback, throughput)."""

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from reskd_infer.cli.doctor import main
from reskd_infer.doctor import FAIL, PASS, SKIPPED, Check
from reskd_infer.doctor import run as doctor_run

CPU_CHECKS = ("onnxruntime providers", "torch cpu", "onnxruntime cpu vs torch cpu", "mismatched plan falls back",
              "throughput torch cpu", "throughput onnxruntime cpu")
GPU_CHECKS = ("nvidia driver", "cuda (torch)", "tensorrt", "torch cuda vs cpu", "preprocess cuda vs cpu",
              "onnxruntime cuda ep vs cpu", "onnxruntime tensorrt ep vs cpu", "tensorrt fp16 plan",
              "throughput torch cuda", "throughput onnxruntime cuda", "throughput tensorrt cuda")


@pytest.fixture(scope="module")
def doctor_run_here(tmp_path_factory):
    out = tmp_path_factory.mktemp("doctor") / "report"
    proc = subprocess.run([sys.executable, "-m", "reskd_infer.doctor", "--json", "--out", str(out), "--size", "32",
                           "--frames", "4", "--rounds", "2", "--threads", "1"],
                          capture_output=True, text=True, timeout=600)
    return proc, out


def test_doctor_json_lists_every_check_with_status_and_detail(doctor_run_here):
    proc, out = doctor_run_here
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    checks = {c["name"]: c for c in doc["checks"]}
    assert all(set(c) == {"name", "status", "detail"} and c["detail"] for c in doc["checks"])
    assert set(checks) == set(CPU_CHECKS) | set(GPU_CHECKS)
    assert {c["status"] for c in doc["checks"]} <= {PASS, FAIL, SKIPPED}
    for name in CPU_CHECKS:
        assert checks[name]["status"] == PASS, checks[name]
    assert "max abs diff" in checks["onnxruntime cpu vs torch cpu"]["detail"]
    detail = checks["mismatched plan falls back"]["detail"]
    assert "served by onnxruntime" in detail or "served by openvino" in detail  # the plan's ONNX fallback
    cpu_rows = [r for r in doc["throughput"] if r["device"] == "cpu"]
    assert sorted((r["backend"], r["batch"]) for r in cpu_rows) == [("onnxruntime", 1), ("onnxruntime", 8),
                                                                      ("torch", 1), ("torch", 8)]
    assert all(r["clips_per_s"] > 0 for r in cpu_rows)
    assert doc["summary"][PASS] == sum(c["status"] == PASS for c in doc["checks"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the GPU checks run instead")
def test_without_a_gpu_every_gpu_check_is_skipped_with_its_reason(doctor_run_here):
    proc, _ = doctor_run_here
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    for name in GPU_CHECKS:
        assert checks[name]["status"] == SKIPPED, checks[name]
        assert any(word in checks[name]["detail"] for word in ("GPU", "CUDA", "nvidia-smi")), checks[name]
    assert "reskd-infer[gpu]" in checks["tensorrt"]["detail"]


def test_doctor_writes_json_and_markdown_reports(doctor_run_here):
    proc, out = doctor_run_here
    saved = json.loads((out / "doctor.json").read_text())
    assert saved == json.loads(proc.stdout)
    markdown = (out / "doctor.md").read_text()
    assert markdown.startswith("# reskd-doctor report")
    for check in saved["checks"]:
        assert f"| {check['name']} |" in markdown
    assert "## Throughput" in markdown


def test_a_check_that_raises_is_a_failure_and_the_exit_status_says_so(tmp_path, monkeypatch, capsys):
    def check_broken_install(workbench):
        raise OSError("libnvinfer.so.10: cannot open shared object file")

    def check_fine(workbench):
        return Check("fine", PASS, "ok")

    monkeypatch.setattr(doctor_run, "CHECKS", (check_fine, check_broken_install))
    monkeypatch.setattr(doctor_run, "measure_throughput", lambda wb, rounds, progress: ([], []))
    assert main(["--out", str(tmp_path), "--quiet"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "PASS     fine: ok"
    assert lines[1].startswith("FAIL     broken install: OSError: libnvinfer.so.10") and "test_doctor.py" in lines[1]
    assert lines[-1].startswith("1 passed, 1 failed, 0 skipped")
    assert "| broken install | FAIL |" in (tmp_path / "doctor.md").read_text()


def test_console_script_and_help(capsys):
    scripts = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["reskd-doctor"] == "reskd_infer.cli.doctor:main"
    from reskd_infer.cli.doctor import main as doctor_main

    with pytest.raises(SystemExit) as info:
        doctor_main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--out", "--json", "--device", "--arch", "--size", "--frames", "--video", "--rounds", "--threads",
                 "--quiet", "Exit status"):
        assert flag in text, flag
    with pytest.raises(SystemExit):
        main(["--device", "cpu"])
