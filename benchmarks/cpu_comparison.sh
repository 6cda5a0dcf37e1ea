#!/usr/bin/env bash
# GRAM against TRM and the generative baselines (AR, MDLM) on the CPU stand-ins of the paper's tasks, several seeds,
# two runs at a time with one thread each (a 2-core machine):
#
#   bash benchmarks/cpu_comparison.sh nqueens8 coloring8        # GRAM and TRM, seeds 0 1 2, the step budgets below
#   SEEDS="0" NQUEENS_STEPS=500 bash benchmarks/cpu_comparison.sh nqueens8
#   SEEDS="0" NQUEENS_SPLIT=paper bash benchmarks/cpu_comparison.sh nqueens8   # the paper's leaking split
#   SEEDS="0" bash benchmarks/cpu_comparison.sh nqueens10      # 10x10, nqueens10_cpu.yaml, NQUEENS10_STEPS steps
#   MODELS="gram trm ar mdlm" BUDGET=00:00:08:00 bash benchmarks/cpu_comparison.sh nqueens8 coloring8 sudoku4gen
#
# MODELS: any of gram, trm (experiments/baselines/trm.yaml), ar and mdlm (experiments/baselines/ar.yaml, mdlm.yaml).
# BUDGET: the same wall-clock training budget (DD:HH:MM:SS) for every model instead of the step counts; such runs log
# to logs/<config>_budget/ so they sit apart from the step-budget runs. Wall time depends on what else shares the
# cores; MODEL_STEPS gives a model its own step count instead, e.g. the steps that take it as long as GRAM's take
# GRAM, from the idle step times of benchmarks/baselines.py; its validations then fall at the same fractions of the
# run as GRAM's (every 250 x its steps / GRAM's steps):
#   MODELS="ar mdlm" MODEL_STEPS="ar:nqueens8=3100 mdlm:nqueens8=3100" bash benchmarks/cpu_comparison.sh nqueens8
#
# Each run logs to logs/<config name>/<model>_s<seed> (validation every 250 steps at N=20: single-sample and
# voted accuracy, pass@20, coverage, conflict edges), then benchmarks/scaling.py measures its last checkpoint on
# the whole test split at N = 1 and 20 (into <run>/scaling/): GRAM and TRM at 4 and 8 supervision steps, MDLM at
# two numbers of denoising steps (the second one token per step), AR at its one depth. The unconditional 4x4 Sudoku
# task (sudoku4gen) is measured by benchmarks/generation.py instead (validity and distinct boards, 4 x 144 samples).
# Summarise the seeds with benchmarks/seed_curves.py. Every task uses its config as shipped; N-Queens on the orbit
# split, GRAM with nqueens8_cpu.yaml's recipe (the KL summed over the latent, weight 4.5 on the ELBO scale, sigma at
# most 0.3, the attention-mixing prior: the recipe that learns on this budget, benchmarks/RESULTS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
SEEDS=${SEEDS:-"0 1 2"}
MODELS=${MODELS:-"gram trm"}
BUDGET=${BUDGET:-}
MODEL_STEPS=${MODEL_STEPS:-}  # model:task=steps ...
NQUEENS_STEPS=${NQUEENS_STEPS:-1500}
NQUEENS10_STEPS=${NQUEENS10_STEPS:-1500}
COLORING_STEPS=${COLORING_STEPS:-1000}
SUDOKU_STEPS=${SUDOKU_STEPS:-2000}
PARALLEL=${PARALLEL:-2}
NQUEENS_SPLIT=${NQUEENS_SPLIT:-orbit}  # orbit, or paper (runs named <model>_paper_s<seed>)
EXTRA_ARGS=${EXTRA_ARGS:-}  # more `gram fit` arguments for every run
RUN_NAME=${RUN_NAME:-}  # runs named <RUN_NAME>_s<seed> instead of <model>_s<seed>
EVALUATE=${EVALUATE:-1}  # 0: no scaling / generation table at the end (the validation curves only)
TASKS="nqueens8 nqueens10 coloring8 sudoku4gen"

run() {  # run <task> <model> <seed>: one training run, then its scaling (or generation) table
    local task=$1 model=$2 seed=$3 config steps name=${RUN_NAME:-$2} extra=() depths val_n=20
    case $model in
        gram) ;;
        trm | ar | mdlm) extra=(--config "experiments/baselines/$model.yaml") ;;
        *) echo "unknown model '$model' (gram, trm, ar, mdlm)" >&2; return 2 ;;
    esac
    case $task in
        nqueens8 | nqueens10) config=${task}_cpu; depths="4 8"
            steps=$NQUEENS_STEPS; [ "$task" = nqueens10 ] && steps=$NQUEENS10_STEPS
            [ "$model" = mdlm ] && depths="16 64"
            extra+=(--data.init_args.split "$NQUEENS_SPLIT")
            [ "$NQUEENS_SPLIT" = orbit ] || name="${model}_$NQUEENS_SPLIT" ;;
        coloring8) config=graph_coloring8_cpu; steps=$COLORING_STEPS; depths="4 8" ;;
        sudoku4gen) config=sudoku4_uncond_cpu; steps=$SUDOKU_STEPS; depths="4 16"
            val_n=1 ;;  # one board per blank input: a vote would pick the most common board
    esac
    [ "$model" = ar ] && depths="1"
    # shellcheck disable=SC2206
    extra+=($EXTRA_ARGS)  # benchmarks/nqueens_levers.sh: a training option on top of the recipe above
    # MDLM validates and is tested at 16 denoising steps on N-Queens (4 of 8x8's 64 tokens per step), else at one
    # step per output token (8 on graph coloring, 16 on 4x4 Sudoku).
    [ "$model" = mdlm ] && [[ $task == nqueens* ]] && { extra+=(--model.sampling_steps 16); depths="16"; }
    local val_every=250 override
    for override in $MODEL_STEPS; do
        if [ "${override%%=*}" = "$model:$task" ]; then
            val_every=$(( 250 * ${override#*=} / steps )); steps=${override#*=}
        fi
    done
    local log=$config limit=(--trainer.max_steps "$steps" --trainer.max_time null --trainer.val_check_interval "$val_every")
    if [ -n "$BUDGET" ]; then
        log="${config}_budget"; limit=(--trainer.max_steps 1000000 --trainer.max_time "$BUDGET")
    fi
    local version="${name}_s$seed" run_dir="logs/$log/${name}_s$seed"
    mkdir -p "logs/$log"
    echo "[$(date +%T)] start $run_dir (${BUDGET:-$steps steps})"
    OMP_NUM_THREADS=1 "$BIN/gram" fit --config "experiments/$config.yaml" "${extra[@]}" --seed_everything "$seed" \
        "${limit[@]}" --trainer.enable_progress_bar false --model.val_num_samples "$val_n" \
        --trainer.logger.init_args.name "$log" --trainer.logger.init_args.version "$version" > "$run_dir.log" 2>&1 \
        || { echo "[$(date +%T)] FAILED $run_dir: see $run_dir.log"; return 1; }
    if [ "$EVALUATE" = 0 ]; then
        :
    elif [ "$task" = sudoku4gen ]; then
        # shellcheck disable=SC2086
        OMP_NUM_THREADS=1 "$BIN/python" benchmarks/generation.py --config "$run_dir/config.yaml" \
            --ckpt_path "$run_dir/checkpoints/last.ckpt" --steps $depths --repeats 4 >> "$run_dir.log" 2>&1
    else
        # shellcheck disable=SC2086
        OMP_NUM_THREADS=1 "$BIN/python" benchmarks/scaling.py --config "$run_dir/config.yaml" \
            --ckpt_path "$run_dir/checkpoints/last.ckpt" --widths 1 20 --steps $depths >> "$run_dir.log" 2>&1
    fi
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
for seed in $SEEDS; do for task in "$@"; do for model in $MODELS; do echo "$task $model $seed"; done; done; done \
    | xargs -P "$PARALLEL" -L 1 bash "$0" run
