VENV ?= .venv
PY := $(VENV)/bin/python
MASKOPT := $(VENV)/bin/maskopt
DEMO ?= demo
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: setup test demo lint bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check maskopt tests bench
	$(VENV)/bin/mypy maskopt

demo: setup
	bash scripts/demo.sh $(DEMO)

clean:
	rm -rf $(VENV) $(DEMO)
