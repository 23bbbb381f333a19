#!/usr/bin/env bash
# The prepared GPU check (about 7-8 minutes on one H100/H200, no internet): the GPU tests, then every
# benchmark's GPU case, each printing its ratios. Run from the repository root after the README's set-up.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PROBEKIT_DISABLE_PLUGIN_AUTOLOAD=1
export PROBEKIT_CACHE="${PROBEKIT_CACHE:-$(mktemp -d)}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
echo "== GPU tests"
timeout 120 pytest -q -p no:cacheprovider -k "cuda or gpu" tests
echo "== bench_attention: attention_js with eager maps vs rows recomputed from queries and keys (SDPA forward)"
timeout 60 python benchmarks/bench_attention.py --shape tiny-llama --device cuda --tokens 512 4096 --max-eager-gb 60
timeout 45 python benchmarks/bench_attention.py --shape bert-large --device cuda --tokens 512 --max-eager-gb 60
timeout 75 python benchmarks/bench_attention.py --shape llama-1b --device cuda --dtype bfloat16 --tokens 2048 --chunk 512 --max-eager-gb 60
echo "== bench_probe: random BERT-large shape, 300 examples x 128 tokens, float32 then bfloat16"
timeout 120 python benchmarks/bench_probe.py --shape bert-large --examples 300 --device cuda --dtype float32 --repeats 1 --skip-today
timeout 120 python benchmarks/bench_probe.py --shape bert-large --examples 300 --device cuda --dtype bfloat16 --repeats 1 --skip-today
echo "== bench_svcca on the GPU, and where the d x d decompositions are fastest"
timeout 60 python benchmarks/bench_svcca.py --device cuda --repeats 2
timeout 60 python benchmarks/bench_svcca.py --decompositions
echo "== a short fine-tune (bf16 autocast, float32 weights) against a plain loop"
timeout 60 python benchmarks/bench_finetune.py --device cuda --examples 512 --threads 16 --repeats 1
