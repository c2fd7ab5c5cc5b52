VENV ?= .venv
PY := $(VENV)/bin/python
MASKOPT := $(VENV)/bin/maskopt
DEMO ?= demo
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: setup test demo lint bench clean wheels

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

# Two test processes, each taking whole files (a file's fixtures are made once): the tests are
# mostly one thread each, so on 2 cores the suite takes about 3/4 of the time it takes alone.
test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile

lint: setup
	$(VENV)/bin/ruff check maskopt tests bench
	$(VENV)/bin/mypy maskopt

demo: setup
	bash scripts/demo.sh $(DEMO)

# The cp312 manylinux wheels of what the GPU machine lacks (scripts/gpu-wheels.txt), for
# scripts/device_check.sh there; run it where a package index answers. Needs no venv.
WHEELS ?= wheels
PIP ?= python3 -m pip
wheels:
	rm -rf $(WHEELS)
	$(PIP) download -q --no-deps --only-binary=:all: --python-version 3.12 \
		--implementation cp --abi cp312 --platform manylinux2014_x86_64 \
		--platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
		-d $(WHEELS) -r scripts/gpu-wheels.txt
	@du -sb $(WHEELS) | awk '{ mib = $$1 / 1048576; \
		if (mib > 64) { printf "$(WHEELS)/: %.1f MiB, over the 64 MiB a device run carries\n", mib; exit 1 } \
		printf "$(WHEELS)/: %d wheels, %.1f MiB (at most 64)\n", n, mib }' n=$$(ls $(WHEELS) | wc -l)

# The demo folder only if a demo wrote it (scripts/demo.sh leaves its marker there).
clean:
	rm -rf $(VENV)
	@if [ -f "$(DEMO)/.maskopt-demo" ]; then rm -rf "$(DEMO)"; \
	elif [ -e "$(DEMO)" ]; then echo "clean: $(DEMO) kept: no demo wrote it"; fi
