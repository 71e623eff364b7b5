#!/usr/bin/env bash
# The main job: a complete tiny Auffusion experiment on CPU.
#   synthetic captioned sounds -> WebDataset shards -> dataset stats -> HiFi-GAN vocoder -> spectrogram VAE
#   -> latent diffusion (real MiniLM text encoder) -> audio + spectrograms + attention maps for held-out prompts
#   -> objective metrics and synthetic alignment accuracy. Every W&B run is offline (runs/*/wandb).
# Set SKIP_INSTALL=1 to skip the install step on a machine that already has the package.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${SKIP_INSTALL:-0}" = "1" ] || bash scripts/install.sh

export WANDB_MODE=offline WANDB_SILENT=true HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
SYNTH=data/synth
OUT=runs/quickstart
la() { echo "+ lightning_auffusion $*" >&2; python -m lightning_auffusion "$@"; }
start=$(date +%s)
stamp() { echo "[quickstart] $1 done after $(( $(date +%s) - start )) s" >&2; }

la synth --out_dir "$SYNTH" --n_train 64 --n_val 8 --n_test 8 --seed 0
for split in train val test; do
    la shard --audio_dir "$SYNTH" --manifest "$SYNTH/$split.jsonl" --name "synth_$split" --progress false
done
la stats --name synth_train --progress false
stamp "data"

la fit --config conf/vocoder/quickstart.yaml
stamp "vocoder"
la fit --config conf/vae/quickstart.yaml
stamp "VAE"
la fit --config conf/ldm/quickstart.yaml
stamp "LDM"

CKPT=runs/ldm_quickstart/checkpoints/last.ckpt
# audio, spectrograms and cross-attention maps for held-out attribute combinations, sampled with the
# settings of the LDM config's `sampling` block (DPM-Solver++, 25 steps, guidance 3)
la generate --checkpoint "$CKPT" --prompt_file "$SYNTH/test.jsonl" --output_dir "$OUT/generated" --attention_maps true
stamp "generation"
# metrics against the held-out reference clips (extractor weights cannot be downloaded here: random weights,
# so FD/FAD/KL/IS/CLAP are smoke numbers; the synthetic alignment accuracy is meaningful offline)
la evaluate --checkpoint "$CKPT" --prompts "$SYNTH/test.jsonl" --reference "$SYNTH/audio/test" \
    --allow_random_weights true --output "$OUT/eval"
stamp "evaluation"
cat "$OUT/eval/metrics.md"
echo "[quickstart] outputs: $OUT/generated (wav, png, *_attention.png), $OUT/eval, runs/*/wandb (offline W&B runs)"
