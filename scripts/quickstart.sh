#!/usr/bin/env bash
# The main job: a complete tiny Auffusion experiment on CPU.
#   synthetic captioned sounds -> WebDataset shards -> dataset stats -> spectrogram VAE -> latent diffusion (real
#   MiniLM text encoder, the shipped HiFi-GAN V1 vocoder) -> audio + spectrograms + attention maps for held-out
#   prompts -> synthetic alignment accuracy with the stage ceilings. Every W&B run is offline (runs/*/wandb).
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

# 4 s clips (1-3 events each, the full attribute vocabulary; the test split holds only held-out combinations)
la synth --out_dir "$SYNTH" --n_train 256 --n_val 16 --n_test 32 --duration 4 --seed 0
for split in train val test; do
    la shard --audio_dir "$SYNTH" --manifest "$SYNTH/$split.jsonl" --name "synth_$split" --progress false
done
# statistics at the quickstart's mel settings (22.05 kHz, 80 mels, hop 256), for image.mode: meanstd
la stats --name synth_train --progress false --mel.sample_rate 22050 --mel.n_fft 1024 --mel.hop_length 256 --mel.n_mels 80
stamp "data"

# The vocoder is the shipped HiFi-GAN V1 generator (pretrained, nothing to train on CPU); evaluate's ceiling_vocoder
# row below measures it on the held-out clips. Its own validation beside Griffin-Lim, on the val clips (~1 min):
#   python -m lightning_auffusion validate --config conf/vocoder/quickstart.yaml
la fit --config conf/vae/quickstart.yaml
stamp "VAE"
la fit --config conf/ldm/quickstart.yaml
stamp "LDM"

CKPT=runs/ldm_quickstart/checkpoints/last.ckpt
# audio, spectrograms, cross-attention maps and the attention localisation for 8 held-out prompts, sampled with
# the settings of the LDM config's `sampling` block (DPM-Solver++, 25 steps, guidance 3)
head -n 8 "$SYNTH/test.jsonl" > "$SYNTH/test_first8.jsonl"
la generate --checkpoint "$CKPT" --prompt_file "$SYNTH/test_first8.jsonl" --output_dir "$OUT/generated" --attention_maps true
stamp "generation"
# all 32 held-out prompts against their reference clips, with the stage ceilings (the reference clips through the
# vocoder alone, and through VAE + vocoder) and the attention localisation. FD/FAD/KL/IS/CLAP need extractor weights
# that cannot be downloaded here (with random weights they only show that the pipeline runs, and cost ~1 CPU minute):
# add them with --metrics '[fd, fad, kl, is, clap, alignment]' --allow_random_weights true, or --weights_dir.
# --batch_size 1: on 2 CPU cores HiFi-GAN V1 renders clips one at a time ~15 % faster than in batches of 8.
la evaluate --checkpoint "$CKPT" --prompts "$SYNTH/test.jsonl" --reference "$SYNTH/audio/test" \
    --metrics '[alignment]' --attention_localisation true --batch_size 1 --output "$OUT/eval"
stamp "evaluation"
cat "$OUT/eval/metrics.md"
echo "[quickstart] outputs: $OUT/generated (wav, png, *_attention.png), $OUT/eval, runs/*/wandb (offline W&B runs)"
