# Two entry points: `make main` (train -> convert -> predict -> report) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= ../shared/datasets/clothing-dataset-small
QAT_MINUTES ?= 5

.PHONY: main test check install

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[all,dev]"
	$(PY) -m train.imagenet fetch || echo "warning: no ImageNet base copy; --weights imagenet needs Keras' download"
	touch $@

test: install  # two workers share the trained and converted fixtures (tests/conftest.py built_once)
	$(PY) -m pytest -q -n 2 --dist loadfile

check: install  # the fast tier: lint, and the tests that train, convert and soak nothing
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -m "not slow"

main: install
	DATA=$(DATA) PY=$(PY) QAT_MINUTES=$(QAT_MINUTES) bash scripts/main.sh
