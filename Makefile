# The two commands of the README: `make quickstart` (set-up + main job) and `make test`.
# Everything installs into ./.venv; torch is pinned first so pip takes the CPU wheel instead of
# pulling the CUDA build (see README and ../shared/GUIDE.md section 5).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MODELS ?= models
TORCH_VERSION ?= 2.13.0
# Idle OpenMP threads sleep instead of spinning: on a busy 2-core machine spinning threads made small models
# train up to 100x slower; on an idle one it costs nothing measurable. Results do not change.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install quickstart test lint bench-vae

$(BIN)/.hubgen-installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

install: $(BIN)/.hubgen-installed

# The main job, offline: a small model of every registered family on the bundled sklearn digits (about 7 minutes
# on 2 cores in all; each family declares its quickstart options), written to $(MODELS)/<family>-digits with
# its card and evaluation, then the gallery over $(MODELS). `make quickstart NO_LAUNCH=1` skips the launch.
quickstart: install
	$(BIN)/hubgen quickstart --models $(MODELS)
	@if [ -z "$(NO_LAUNCH)" ] && [ -z "$$HUBGEN_NO_LAUNCH" ]; then $(BIN)/hubgen demo $(MODELS); \
	else echo "gallery launch skipped: hubgen demo $(MODELS)"; fi

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check hubgen tests bench spaces

bench-vae: install
	$(BIN)/python bench/vae_mnist.py --data ../shared/data/mnist.npz
