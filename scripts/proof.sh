#!/usr/bin/env bash
# The longer CPU proof (<= 60 min on 2 cores): the quickstart's recipe with 4x the training clips (1024; the same
# vocabulary, 1-3 events and held-out combinations), its VAE trained 2x and its LDM 6x as long, then
#   - the curve of alignment and attention localisation against LDM steps (a checkpoint every 1000 steps, each
#     judged on the 32 held-out test prompts: combinations never seen in training);
#   - the stage ceilings (decoder alone, VAE + decoder; Griffin-Lim, as the quickstart) on the same clips;
#   - composition: the last checkpoint on the 32 val prompts too (new clips of combinations seen in training).
# Outputs: runs/ldm_proof/eval/<checkpoint>/ (metrics.json, metrics.md), runs/ldm_proof/eval_seen/, and a page
# comparing them all: runs/ldm_proof/dashboard/ (index.html, summary.md).
# Set SKIP_INSTALL=1 to skip the install step on a machine that already has the package.
set -euo pipefail
cd "$(dirname "$0")/.."
STAMP_NAME=proof
source scripts/experiment.sh
SYNTH=data/synth_proof
OUT=runs/ldm_proof

make_synth_data "$SYNTH" synth_proof 1024 32 32
stamp "data"
la fit --config conf/vae/quickstart.yaml --config conf/vae/longer/proof.yaml
stamp "VAE"
la fit --config conf/ldm/quickstart.yaml --config conf/ldm/longer/proof.yaml
stamp "LDM"

judge() {  # checkpoint, prompts, output folder, extra evaluate arguments
    la evaluate --checkpoint "$1" --prompts "$2" --metrics '[alignment]' --attention_localisation true \
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
