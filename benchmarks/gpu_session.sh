#!/usr/bin/env bash
# GPU measurements cut into parts that each fit one device call (10 minutes, with a lent machine's 15 minutes
# of device time in all). Run on the lent machine, with .whl carried:
#
#   bash benchmarks/gpu_session.sh speed            # throughput at the paper's and ARC's shapes     (~4 min)
#   bash benchmarks/gpu_session.sh mnist            # GRAM and TRM 3 min each, FID/IS by depth       (~9 min)
#   bash benchmarks/gpu_session.sh mnist_beta1      # the same GRAM run at KL weight 1.0 per position (~5 min)
#   bash benchmarks/gpu_session.sh sudoku_uncond    # 6 min of training, 10,000 boards sampled       (~8 min)
#   bash benchmarks/gpu_session.sh arc              # 7 min of ARC-AGI-1, pass@2 at each validation  (~9 min)
#   bash benchmarks/gpu_session.sh nqueens8         # GRAM, TRM, AR, MDLM side by side, 4 min each   (~8 min)
#   bash benchmarks/gpu_session.sh nqueens8_pair    # GRAM and TRM alone side by side, 6 min each    (~10 min)
#   bash benchmarks/gpu_session.sh nqueens8_cost    # each model's step and sampling time alone      (~2 min)
#   bash benchmarks/gpu_session.sh nqueens10_small  # 10x10, the CPU configs' net: GRAM, TRM x 3 seeds (~6 min)
#   bash benchmarks/gpu_session.sh nqueens8_small   # 8x8, the CPU configs' net: both priors, seeds 3-5 (~6 min)
#
# Every step has its own time limit, and after each one everything measured so far (TensorBoard events,
# configs, csv / json / png, the step's log; no checkpoints) is packed into $OUT/<part>.tar.gz, which is what
# comes back even when the call runs out of time. GRAM_ARGS is added to every `gram` command: on a CPU,
# GRAM_ARGS="--trainer.accelerator cpu ..." with tiny settings checks the commands without a GPU.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-/tmp/gpu_session}
export COLUMNS=${COLUMNS:-200}  # full-width result tables in the logs
LOGS=logs/gpu_session
GRAM_ARGS=${GRAM_ARGS:-}
PARTS="speed mnist mnist_beta1 sudoku_uncond arc nqueens8 nqueens8_pair nqueens8_cost nqueens10_small nqueens8_small"  # the branches of run_part
[ $# -gt 0 ] || { echo "usage: $0 PART... (one or more of: $PARTS)" >&2; exit 2; }
for part in "$@"; do
    [[ " $PARTS " == *" $part "* ]] || { echo "unknown part '$part' (one of: $PARTS)" >&2; exit 2; }
done

if [ -z "${GRAM_SKIP_ENV:-}" ]; then
    # shellcheck source=benchmarks/device_env.sh
    source benchmarks/device_env.sh || exit 1
else
    gram() { python3 -m gram_lightning.cli "$@"; }
fi

pack() {  # pack <part>: what the part has measured so far, small files only
    find "$LOGS/$1" benchmarks/results -newer "$LOGS/.start_$1" -type f \
        \( -name 'events.out.*' -o -name '*.yaml' -o -name '*.csv' -o -name '*.json' -o -name '*.jsonl' \
           -o -name '*.png' -o -name '*.txt' -o -name '*.log' \) -print0 2>/dev/null \
        | tar --null -czf "$OUT/$1.tar.gz" --files-from - 2>/dev/null
    echo "[$(date +%T)] packed $OUT/$1.tar.gz ($(du -h "$OUT/$1.tar.gz" | cut -f1))"
}

step() {  # step <part> <name> <seconds> <command...>: run with a limit, log it, pack the part
    local part=$1 name=$2 limit=$3
    shift 3
    echo "[$(date +%T)] $part/$name (limit ${limit} s): $*"
    # bash -c, so that the limit also applies to this script's functions (fit, generation)
    timeout --signal=INT --kill-after=30 "$limit" bash -c '"$@"' _ "$@" > >(tee "$LOGS/$part/$name.log") 2>&1
    local rc=$?  # before any $(...) resets it
    echo "[$(date +%T)] $part/$name: exit $rc (124: stopped at its limit)"
    pack "$part"
}

fit() {  # fit <part> <version> <max_time> <config args...>
    local part=$1 version=$2 max_time=$3
    shift 3
    gram fit "$@" --trainer.max_time "$max_time" --trainer.enable_progress_bar false \
        --trainer.logger.init_args.save_dir "$LOGS" --trainer.logger.init_args.name "$part" \
        --trainer.logger.init_args.version "$version" $GRAM_ARGS
}

generation() {  # generation <part> <version> <steps...>: FID / IS or validity by sampling depth
    local part=$1 version=$2
    shift 2
    python3 benchmarks/generation.py --config "$LOGS/$part/$version/config.yaml" \
        --ckpt_path "$LOGS/$part/$version/checkpoints/last.ckpt" --steps "$@" --out "$LOGS/$part/$version/generation"
}

# N-Queens 8x8 at the paper's sizes (experiments/nqueens8.yaml: D 512, batch 768, lr 1e-4), with what a few minutes
# allow: warm-up 100 steps instead of 2,000, and validation one sample on 256 test inputs every 100 steps (the curve);
# N=20 on the whole test split comes after, from benchmarks/scaling.py.
NQUEENS8_ARGS="--model.warmup_steps 100 --model.val_num_samples 1 --data.init_args.num_val_puzzles 256
    --trainer.val_check_interval 100 --trainer.log_every_n_steps 25"
NQUEENS8_TIME=${NQUEENS8_TIME:-00:00:04:15}  # each model's training time
SCALING_ARGS=${SCALING_ARGS:-}  # `gram` CLI arguments for benchmarks/scaling.py, e.g. a smaller test split on a CPU
# The N-Queens data of one board size (the argument), generated before the runs that share it start.
NQUEENS_DATA="import sys; from datamodules.nqueens import NQueensDataModule as D; D(board_size=int(sys.argv[1])).prepare_data()"

run_args() {  # run_args <run>: what a run adds to a task config: `gram` nothing (the config as shipped), `gram_mlp`
    # the per-position MLP prior, any other name its overlay in experiments/baselines/ (trm, ar, mdlm, ...)
    case $1 in
        gram) ;;
        gram_mlp) echo "--model.net.init_args.prior_head mlp" ;;
        *) [ -f "experiments/baselines/$1.yaml" ] || { echo "unknown run '$1' (no experiments/baselines/$1.yaml)" >&2; return 2; }
           echo "--config experiments/baselines/$1.yaml" ;;
    esac
}

fit_nqueens8_side_by_side() {  # <part> <max_time> <model...>: one nqueens8.yaml run per model, all at once on the one GPU
    local part=$1 max_time=$2 model overlay
    shift 2
    for model in "$@"; do
        overlay=$(run_args "$model") || return 2
        # shellcheck disable=SC2086  # NQUEENS8_ARGS and overlay are lists of words
        fit "$part" "$model" "$max_time" --config experiments/nqueens8.yaml $overlay $NQUEENS8_ARGS \
            > "$LOGS/$part/fit_$model.log" 2>&1 &
    done
    wait
    grep -h -E "Error|error:" "$LOGS/$part"/fit_*.log | tail -n 20
}

scale_nqueens8_side_by_side() {  # <part> <model...>: N = 1 and 20 on the whole test split, at each model's depths
    local part=$1 model
    shift
    for model in "$@"; do
        local depths="16"  # GRAM and TRM: the trained N_sup
        [ "$model" = ar ] && depths="1"
        [ "$model" = mdlm ] && depths="16 64"  # 4 tokens per denoising step, and one
        # shellcheck disable=SC2086
        python3 benchmarks/scaling.py --config "$LOGS/$part/$model/config.yaml" \
            --ckpt_path "$LOGS/$part/$model/checkpoints/last.ckpt" --widths 1 20 --steps $depths \
            ${SCALING_ARGS:+-- $SCALING_ARGS} > "$LOGS/$part/scaling_$model.log" 2>&1 &
    done
    wait
    cat "$LOGS/$part"/scaling_*.log
}

# The CPU configs' small net (nqueens8_cpu.yaml, nqueens10_cpu.yaml: D 64, batch 128, 4 supervision steps) on the
# GPU, where it runs the steps a CPU cannot give it: one process per run and seed, all at once. A run is `gram` (the
# config as shipped: the attention-mixing prior), `gram_mlp` (the per-position MLP prior) or a baseline (run_args).
SMALL_SEEDS=${SMALL_SEEDS:-"0 1 2"}  # nqueens10_small's seeds; nqueens8_small's are SMALL_SEEDS_8, 3 4 5
SMALL_TIME=${SMALL_TIME:-00:00:04:00}  # each run's training time

fit_small_side_by_side() {  # <part> <config> <seeds> <run...>: every run at every seed, SMALL_TIME each, at once
    local part=$1 config=$2 seeds=$3 run seed args
    shift 3
    for run in "$@"; do
        args=$(run_args "$run") || return 2
        for seed in $seeds; do
            # shellcheck disable=SC2086  # args is a list of words
            OMP_NUM_THREADS=2 fit "$part" "${run}_s$seed" "$SMALL_TIME" --config "experiments/$config.yaml" $args \
                --seed_everything "$seed" --trainer.accelerator gpu --model.val_num_samples 20 \
                > "$LOGS/$part/fit_${run}_s$seed.log" 2>&1 &
        done
    done
    wait
    grep -h -E "Error|error:" "$LOGS/$part"/fit_*.log | tail -n 20
}

scale_small_side_by_side() {  # <part>: N = 1 and 20 on the whole test split at the trained 4 steps, every run at once
    local part=$1 run_dir
    for run_dir in "$LOGS/$part"/*_s*/; do
        run_dir=${run_dir%/}
        # shellcheck disable=SC2086
        OMP_NUM_THREADS=2 python3 benchmarks/scaling.py --config "$run_dir/config.yaml" \
            --ckpt_path "$run_dir/checkpoints/last.ckpt" --widths 1 20 --steps 4 ${SCALING_ARGS:+-- $SCALING_ARGS} \
            > "$run_dir.scaling.log" 2>&1 &
    done
    wait
    tail -n 8 "$LOGS/$part"/*.scaling.log
}

export LOGS GRAM_ARGS NQUEENS8_ARGS SCALING_ARGS SMALL_SEEDS SMALL_TIME
export -f gram fit generation run_args fit_nqueens8_side_by_side scale_nqueens8_side_by_side \
    fit_small_side_by_side scale_small_side_by_side

run_part() {
    local part=$1
    mkdir -p "$LOGS/$part"
    touch "$LOGS/.start_$part"
    case $part in
    speed)
        step speed paper 150 python3 benchmarks/throughput.py --preset paper
        step speed arc 90 python3 benchmarks/throughput.py --preset arc --cores attention
        ;;
    mnist)
        step mnist fit_gram 220 fit mnist gram 00:00:03:00 --config experiments/mnist.yaml \
            --trainer.val_check_interval 250
        step mnist fit_trm 220 fit mnist trm 00:00:03:00 --config experiments/mnist.yaml \
            --config experiments/baselines/trm.yaml --trainer.val_check_interval 250
        step mnist depth_gram 60 generation mnist gram 8 16 64 256
        step mnist depth_trm 60 generation mnist trm 8 16 64 256
        ;;
    mnist_beta1)
        step mnist_beta1 fit_gram 220 fit mnist_beta1 gram 00:00:03:00 --config experiments/mnist.yaml \
            --model.beta 1.0 --trainer.val_check_interval 250
        step mnist_beta1 depth_gram 60 generation mnist_beta1 gram 8 16 64 256
        ;;
    sudoku_uncond)
        step sudoku_uncond fit_gram 420 fit sudoku_uncond gram 00:00:06:00 --config experiments/sudoku_uncond.yaml \
            --trainer.val_check_interval 500
        # The test split: 10,000 boards, one sample each, at the trained 16 steps and deeper.
        step sudoku_uncond depth_gram 90 generation sudoku_uncond gram 16 32 64
        ;;
    arc)
        step arc fit_gram 520 fit arc gram 00:00:07:00 --config experiments/arc1.yaml \
            --data.init_args.num_proc 16 --trainer.val_check_interval 100
        ;;
    nqueens8)
        # The four models share the GPU for the same wall time, so each reaches the steps its cost allows beside
        # the others (the nqueens8_cost part times each one alone).
        step nqueens8 data 30 python3 -c "$NQUEENS_DATA" 8
        step nqueens8 fit 330 fit_nqueens8_side_by_side nqueens8 "$NQUEENS8_TIME" gram trm ar mdlm
        step nqueens8 scaling 150 scale_nqueens8_side_by_side nqueens8 gram trm ar mdlm
        ;;
    nqueens8_pair)
        # The recursive pair alone: about twice the steps each of the four-model run in the same wall time.
        step nqueens8_pair data 30 python3 -c "$NQUEENS_DATA" 8
        step nqueens8_pair fit 420 fit_nqueens8_side_by_side nqueens8_pair "${NQUEENS8_PAIR_TIME:-00:00:06:00}" gram trm
        step nqueens8_pair scaling 120 scale_nqueens8_side_by_side nqueens8_pair gram trm
        ;;
    nqueens8_cost)
        step nqueens8_cost baselines 150 python3 benchmarks/baselines.py --config experiments/nqueens8.yaml \
            --warmup 3 --steps 10 --out "$LOGS/nqueens8_cost/baselines.json"
        ;;
    nqueens10_small)
        # GRAM and TRM with the 10x10 CPU recipe for as many steps as SMALL_TIME gives on the GPU: on a CPU both sit
        # on the input-copying plateau to 1,500 steps and barely off it at 3,000 (benchmarks/RESULTS.md, "N-Queens
        # 10x10 to 3,000 steps with both priors").
        step nqueens10_small data 60 python3 -c "$NQUEENS_DATA" 10
        step nqueens10_small fit 300 fit_small_side_by_side nqueens10_small nqueens10_cpu "$SMALL_SEEDS" gram trm
        step nqueens10_small scaling 120 scale_small_side_by_side nqueens10_small
        ;;
    nqueens8_small)
        # Both priors of GRAM with the 8x8 CPU recipe on three more seeds than the CPU comparison's 0-2.
        step nqueens8_small data 30 python3 -c "$NQUEENS_DATA" 8
        step nqueens8_small fit 300 fit_small_side_by_side nqueens8_small nqueens8_cpu "${SMALL_SEEDS_8:-3 4 5}" gram gram_mlp
        step nqueens8_small scaling 120 scale_small_side_by_side nqueens8_small
        ;;
    esac
}

mkdir -p "$OUT" "$LOGS"
for part in "$@"; do
    run_part "$part"
done
