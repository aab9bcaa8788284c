#!/bin/bash
# The speed options on the CPU (issue 18): images/s from hubgen_training.json, one thread, the digits.
# Run from the repository root after `make install`; writes to ${OUT:-/tmp/hubgen-speed}. About 2 minutes.
set -e
OUT=${OUT:-/tmp/hubgen-speed}
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
run() {  # family tag options...
  fam=$1; tag=$2; shift 2; dir=$OUT/$fam-$tag; rm -rf "$dir"
  .venv/bin/python -m hubgen train "$fam" --dataset digits --output_dir "$dir" --report_to none --eval_num_samples 0 \
    --checkpointing_steps 1000 --sample_steps 1000 "$@" > /dev/null 2>&1
  echo "$fam $tag $(.venv/bin/python -c "import json; r = json.load(open('$dir/hubgen_training.json')); print(r['images_per_second'], 'images/s')")"
}
DDPM="--max_train_steps 30 --train_batch_size 32 --block_out_channels 32 64 --attention none --norm_num_groups 8 --num_train_timesteps 100 --eval_num_images 0"
run ddpm base $DDPM
run ddpm channels_last $DDPM --channels_last
run ddpm gradient_checkpointing $DDPM --gradient_checkpointing
run ddpm workers2 $DDPM --dataloader_num_workers 2
run ddpm tf32 $DDPM --allow_tf32
run ddpm accum2 $DDPM --train_batch_size 16 --gradient_accumulation_steps 2
GAN="--max_train_steps 200 --train_batch_size 64 --latent_dim 32 --base_channels 16"
run gan base $GAN
run gan channels_last $GAN --channels_last
VAE="--max_train_steps 200 --train_batch_size 128 --architecture conv --eval_num_images 0"
run vae base $VAE
run vae channels_last $VAE --channels_last
run vae workers2 $VAE --dataloader_num_workers 2
FLOW="--max_train_steps 30 --train_batch_size 32 --steps_per_level 2 --hidden_channels 32 --eval_num_images 0"
run flow base $FLOW
run flow channels_last $FLOW --channels_last
