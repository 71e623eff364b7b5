#!/usr/bin/env bash
# The longer CPU proof (<= 60 min on 2 cores): the quickstart's recipe with 4x the training clips (1024; the same
# vocabulary, 1-3 events and held-out combinations), its VAE trained 2x and its LDM 6x as long, then
#   - the curve of alignment and attention localisation against LDM steps (a checkpoint every 1000 steps, each
#     judged on the 32 held-out test prompts: combinations never seen in training);
#   - the stage ceilings (vocoder alone, VAE + vocoder) on the same clips;
#   - composition: the last checkpoint on the 32 val prompts too (new clips of combinations seen in training).
# Outputs: runs/ldm_proof/eval/<checkpoint>/ (metrics.json, metrics.md), runs/ldm_proof/eval_seen/, and a page
# comparing them all: runs/ldm_proof/dashboard/ (index.html, summary.md).
# Set SKIP_INSTALL=1 to skip the install step on a machine that already has the package.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${SKIP_INSTALL:-0}" = "1" ] || bash scripts/install.sh

export WANDB_MODE=offline WANDB_SILENT=true HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
SYNTH=data/synth_proof
OUT=runs/ldm_proof
la() { echo "+ lightning_auffusion $*" >&2; python -m lightning_auffusion "$@"; }
start=$(date +%s)
stamp() { echo "[proof] $1 done after $(( $(date +%s) - start )) s" >&2; }

# the test split is the quickstart's (clips are seeded by split and index, not by the split sizes)
la synth --out_dir "$SYNTH" --n_train 1024 --n_val 32 --n_test 32 --duration 4 --seed 0
for split in train val test; do
    la shard --audio_dir "$SYNTH" --manifest "$SYNTH/$split.jsonl" --name "synth_proof_$split" --progress false
done
la stats --name synth_proof_train --progress false --mel.sample_rate 22050 --mel.n_fft 1024 --mel.hop_length 256 --mel.n_mels 80
stamp "data"
la fit --config conf/vae/quickstart.yaml --config conf/vae/longer/proof.yaml
stamp "VAE"
la fit --config conf/ldm/quickstart.yaml --config conf/ldm/longer/proof.yaml
stamp "LDM"

judge() {  # checkpoint, prompts, output folder, extra evaluate arguments
    la evaluate --checkpoint "$1" --prompts "$2" --metrics '[alignment]' --attention_localisation true --batch_size 1 \
        --output "$3" "${@:4}"
}
last=""
for ckpt in "$OUT"/checkpoints/step*.ckpt; do last="$ckpt"; done
for ckpt in "$OUT"/checkpoints/step*.ckpt; do
    name=$(basename "$ckpt" .ckpt)
    if [ "$ckpt" = "$last" ]; then  # the stage ceilings once, beside the last checkpoint
        judge "$ckpt" "$SYNTH/test.jsonl" "$OUT/eval/$name" --reference "$SYNTH/audio/test"
    else
        judge "$ckpt" "$SYNTH/test.jsonl" "$OUT/eval/$name" --ceilings false
    fi
    stamp "evaluation of $name"
done
judge "$last" "$SYNTH/val.jsonl" "$OUT/eval_seen" --ceilings false
stamp "evaluation on seen combinations"
runs=$(printf '%s,' "$OUT"/eval/step* "$OUT/eval_seen")
la dashboard --runs "[${runs%,}]" --output "$OUT/dashboard" --media copy --title "Longer CPU proof"
cat "$OUT/dashboard/summary.md"
