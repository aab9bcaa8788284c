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

# The main job, offline: train a small model of every family on the bundled sklearn digits (about 7 minutes
# on 2 cores in all), each written to $(MODELS)/<family>-digits with its card and evaluation, then open the
# gallery over $(MODELS). `make quickstart NO_LAUNCH=1` skips the launch.
NOT_NOW := --num_epochs 100000 --checkpointing_steps 100000 --sample_steps 100000

quickstart: install
	$(BIN)/hubgen train vae --dataset digits --output_dir $(MODELS)/vae-digits --overwrite_output_dir \
		--latent_dim 2 --hidden_dims 256 128 --num_epochs 1000 --max_train_time 75 \
		--train_batch_size 64 --learning_rate 2e-3 --checkpointing_steps 5000 --sample_steps 5000 \
		--eval_k 1000 --eval_num_images 1000
	$(BIN)/hubgen train gan --dataset digits --output_dir $(MODELS)/gan-digits --overwrite_output_dir $(NOT_NOW) \
		--latent_dim 32 --base_channels 32 --train_batch_size 64 --max_train_time 60 --eval_num_samples 1000
	$(BIN)/hubgen train flow --dataset digits --output_dir $(MODELS)/flow-digits --overwrite_output_dir $(NOT_NOW) \
		--max_train_time 60 --eval_num_samples 1000
	$(BIN)/hubgen train ddpm --dataset digits --output_dir $(MODELS)/ddpm-digits --overwrite_output_dir $(NOT_NOW) \
		--max_train_time 90 --eval_num_images 100 --eval_num_samples 200
	$(BIN)/hubgen train text2img --dataset digits --output_dir $(MODELS)/text2img-digits --overwrite_output_dir \
		$(NOT_NOW) --max_train_time 90 --eval_num_samples 200
	@if [ -z "$(NO_LAUNCH)" ] && [ -z "$$HUBGEN_NO_LAUNCH" ]; then HUBGEN_GALLERY_DIR=$(MODELS) $(BIN)/hubgen demo; \
	else echo "Model folders: $(MODELS)/*-digits (gallery launch skipped: HUBGEN_GALLERY_DIR=$(MODELS) hubgen demo)"; fi

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check hubgen tests bench spaces

bench-vae: install
	$(BIN)/python bench/vae_mnist.py --data ../shared/data/mnist.npz
