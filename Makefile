# The two commands of the README: `make quickstart` (set-up + main job) and `make test`.
# Everything installs into ./.venv; torch is pinned first so pip takes the CPU wheel instead of
# pulling the CUDA build (see README and ../shared/GUIDE.md section 5).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= models/vae-digits
TORCH_VERSION ?= 2.13.0

.PHONY: install quickstart test lint bench-vae

$(BIN)/.hubgen-installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

install: $(BIN)/.hubgen-installed

# Train a small VAE on the bundled sklearn digits (offline, about a minute on 2 cores), write the model
# folder with its card, then open the demo. `make quickstart NO_LAUNCH=1` skips the launch.
quickstart: install
	$(BIN)/hubgen train vae --dataset digits --output_dir $(OUT) --overwrite_output_dir \
		--latent_dim 2 --hidden_dims 256 128 --num_epochs 1000 --max_train_time 75 \
		--train_batch_size 64 --learning_rate 2e-3 --checkpointing_steps 5000 --sample_steps 5000 \
		--eval_k 1000 --eval_num_images 1000
	@if [ -z "$(NO_LAUNCH)" ] && [ -z "$$HUBGEN_NO_LAUNCH" ]; then $(BIN)/hubgen demo $(OUT); \
	else echo "Model folder: $(OUT) (demo launch skipped)"; fi

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check hubgen tests bench spaces

bench-vae: install
	$(BIN)/python bench/vae_mnist.py --data ../shared/data/mnist.npz
