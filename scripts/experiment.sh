# Shared by scripts/quickstart.sh and scripts/proof.sh (sourced, after `cd` to the repository root):
# the install step, offline W&B and hub, `la` (the CLI, echoed) and `stamp` (elapsed-time stamps), and the
# synthetic data: make_synth_data <folder> <shard prefix> <n_train> <n_val> <n_test>
# (4 s clips of 1-3 events, the full attribute vocabulary; the test split holds only held-out combinations,
# and clips are seeded by split and index, so every split size gives the same first clips).
[ "${SKIP_INSTALL:-0}" = "1" ] || bash scripts/install.sh

export WANDB_MODE=offline WANDB_SILENT=true HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
la() { echo "+ lightning_auffusion $*" >&2; python -m lightning_auffusion "$@"; }
start=$(date +%s)
stamp() { echo "[${STAMP_NAME:-experiment}] $1 done after $(( $(date +%s) - start )) s" >&2; }

make_synth_data() {
    local folder=$1 prefix=$2
    la synth --out_dir "$folder" --n_train "$3" --n_val "$4" --n_test "$5" --duration 4 --seed 0
    for split in train val test; do
        la shard --audio_dir "$folder" --manifest "$folder/$split.jsonl" --name "${prefix}_$split" --progress false
    done
    # statistics at the quickstart's mel settings (22.05 kHz, 80 mels, hop 256), for image.mode: meanstd
    la stats --name "${prefix}_train" --progress false \
        --mel.sample_rate 22050 --mel.n_fft 1024 --mel.hop_length 256 --mel.n_mels 80
}
