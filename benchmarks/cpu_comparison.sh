#!/usr/bin/env bash
# GRAM against TRM on the CPU stand-ins of the paper's multi-solution tasks, several seeds, the same step budget
# for both models, two runs at a time with one thread each (a 2-core machine):
#
#   bash benchmarks/cpu_comparison.sh nqueens8 coloring8        # both tasks, seeds 0 1 2
#   SEEDS="0" NQUEENS_STEPS=500 bash benchmarks/cpu_comparison.sh nqueens8
#   SEEDS="0" NQUEENS_SPLIT=paper bash benchmarks/cpu_comparison.sh nqueens8   # the paper's leaking split
#
# Each run logs to logs/<config name>/<model>_s<seed> (validation every 250 steps at N=20: single-sample and
# voted accuracy, pass@20, coverage, conflict edges), then benchmarks/scaling.py measures its last checkpoint on
# the whole test split at N = 1 and 20, 4 and 8 supervision steps (into <run>/scaling/). Summarise the seeds with
# benchmarks/seed_curves.py. N-Queens uses the orbit split, GRAM with the KL read as summed over the latent
# (weight 4.5 on the ELBO scale) and sigma bounded at 0.3, the recipe that learns on this budget
# (benchmarks/RESULTS.md); graph coloring uses its config as shipped.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
SEEDS=${SEEDS:-"0 1 2"}
NQUEENS_STEPS=${NQUEENS_STEPS:-1500}
COLORING_STEPS=${COLORING_STEPS:-1000}
PARALLEL=${PARALLEL:-2}
NQUEENS_SPLIT=${NQUEENS_SPLIT:-orbit}  # orbit, or paper (runs named <model>_paper_s<seed>)
TASKS="nqueens8 coloring8"

run() {  # run <task> <model> <seed>: one training run, then its scaling table
    local task=$1 model=$2 seed=$3 config steps name=$2 extra=()
    [ "$model" = trm ] && extra=(--config experiments/baselines/trm.yaml)
    case $task in
        nqueens8) config=nqueens8_cpu; steps=$NQUEENS_STEPS
            [ "$model" = gram ] && extra+=(--model.kl_reduction sum --model.beta 0.07
                --model.net.init_args.max_sigma 0.3 --model.net.init_args.init_sigma 0.1)
            extra+=(--data.init_args.split "$NQUEENS_SPLIT")
            [ "$NQUEENS_SPLIT" = orbit ] || name="${model}_$NQUEENS_SPLIT" ;;
        coloring8) config=graph_coloring8_cpu; steps=$COLORING_STEPS ;;
    esac
    local version="${name}_s$seed" run_dir="logs/$config/${name}_s$seed"
    echo "[$(date +%T)] start $run_dir ($steps steps)"
    OMP_NUM_THREADS=1 "$BIN/gram" fit --config "experiments/$config.yaml" "${extra[@]}" --seed_everything "$seed" \
        --trainer.max_steps "$steps" --trainer.max_time null --trainer.enable_progress_bar false \
        --model.val_num_samples 20 --trainer.logger.init_args.version "$version" > "$run_dir.log" 2>&1 \
        || { echo "[$(date +%T)] FAILED $run_dir: see $run_dir.log"; return 1; }
    OMP_NUM_THREADS=1 "$BIN/python" benchmarks/scaling.py --config "$run_dir/config.yaml" \
        --ckpt_path "$run_dir/checkpoints/last.ckpt" --widths 1 20 --steps 4 8 >> "$run_dir.log" 2>&1
    echo "[$(date +%T)] done $run_dir"
}

if [ "${1:-}" = run ]; then
    shift
    run "$@"
    exit
fi
[ $# -gt 0 ] || { echo "usage: $0 TASK... (one or more of: $TASKS)" >&2; exit 2; }
for task in "$@"; do
    [[ " $TASKS " == *" $task "* ]] || { echo "unknown task '$task' (one of: $TASKS)" >&2; exit 2; }
done
mkdir -p logs/nqueens8_cpu logs/graph_coloring8_cpu
for seed in $SEEDS; do for task in "$@"; do for model in gram trm; do echo "$task $model $seed"; done; done; done \
    | xargs -P "$PARALLEL" -L 1 bash "$0" run
