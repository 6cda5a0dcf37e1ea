#!/usr/bin/env bash
# GRAM's training levers on N-Queens 8x8 (CPU size, orbit split), each against the same baseline: the recipe of
# experiments/nqueens8_cpu.yaml (KL summed, beta 0.07, sigma at most 0.3, attention-mixing prior) with one option
# changed, over 3 seeds, two runs at a time with one thread each. Each run logs to logs/nqueens8_cpu/<lever>_s<seed>
# (validation every 250 steps at N=20) and ends with its scaling table on the whole test split; compare them with
#   python benchmarks/seed_curves.py logs/nqueens8_cpu --metrics val/sample_acc val/coverage val/sample_queen_conflicts_per_input
#
#   bash benchmarks/nqueens_levers.sh                        # every lever, seeds 0 1 2, 1,500 steps
#   SEEDS=0 NQUEENS_STEPS=1000 EVALUATE=0 bash benchmarks/nqueens_levers.sh free_bits mlp_prior   # a quick screen
#
# The baseline itself is cpu_comparison.sh's gram_s<seed>. EXTRA_ARGS go before every lever's option, e.g. the
# per-position MLP prior under every lever, the baseline of the levers measured in benchmarks/RESULTS.md:
#   EXTRA_ARGS="--model.net.init_args.prior_head mlp" SEEDS=0 bash benchmarks/nqueens_levers.sh free_bits
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-"0 1 2"}
PARALLEL=${PARALLEL:-2}
declare -A LEVERS=(
    [posterior_all]="--model.net.init_args.posterior_transitions all"  # q at every transition (Eq. 3)
    [free_bits]="--model.kl_free_bits 0.05"  # nats per latent position
    [beta_warm]="--model.beta_start 0.007 --model.beta_anneal_steps 750"  # the KL weight rises 10x to 0.07
    [mixing_prior]="--model.net.init_args.prior_head mixing"  # an attention block in the prior (the config's own)
    [mlp_prior]="--model.net.init_args.prior_head mlp"  # the prior an MLP on each position's u
    [final_value]="--model.value_target final"  # the LPRM learns the trajectory's final reward (Eq. 5)
    [sigma_wide]="--model.net.init_args.max_sigma 1.0"  # the net's default sigma bound instead of the config's 0.3
    [sigma_small]="--model.net.init_args.init_sigma 0.01"  # start nearly deterministic, as TRM, and let sigma grow
    [noise_warmup]="--model.noise_warmup_steps 500"  # the training residual grows from 0 over half the screen
    [kl_detached]="--model.net.init_args.noise_input detached"  # the KL trains the heads, never the core
    [carry_prior_draw]="--model.carry prior_draw"  # the next step starts from the prior draw, not the posterior's state
)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(posterior_all free_bits beta_warm mlp_prior final_value sigma_wide sigma_small noise_warmup kl_detached
    carry_prior_draw)
for name in "${names[@]}"; do
    [ -n "${LEVERS[$name]+x}" ] || { echo "unknown lever '$name' (${!LEVERS[*]})" >&2; exit 2; }
done
for seed in $SEEDS; do for name in "${names[@]}"; do echo "$name $seed"; done; done \
    | while read -r name seed; do echo "$name ${LEVERS[$name]// /@} $seed"; done \
    | BASE_ARGS=${EXTRA_ARGS:-} xargs -P "$PARALLEL" -L 1 \
        bash -c 'RUN_NAME=$0 EXTRA_ARGS="$BASE_ARGS ${1//@/ }" bash benchmarks/cpu_comparison.sh run nqueens8 gram "$2"'
