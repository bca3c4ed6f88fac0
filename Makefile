# Aesthetic scoring with multimodal LLMs — reproduction pipeline.
# `make reproduce` builds the environment if needed and runs the DVC pipeline on PROFILE (demo|paper).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PROFILE ?= demo
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
LOCK := requirements.lock
IMAGE ?= aesthetic-llm:latest
GPUS ?= 1
# A new .venv takes about 7 GB (torch's CUDA wheel and its CUDA libraries): refuse early, in one line.
VENV_MIN_GB ?= 9
# The stamp is named after the lock's hash: a changed lock rebuilds, an unchanged one is a no-op.
STAMP := $(VENV)/.installed-$(shell sha256sum $(LOCK) pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)
# Recipes, and the stage commands `dvc repro` runs (`python scripts/…`), must use the project's
# environment even when it is not activated.
export PATH := $(abspath $(VENV))/bin:$(PATH)
export DS_BUILD_OPS := 0
export PYTHONUNBUFFERED := 1
export HF_HUB_DISABLE_TELEMETRY := 1

QALIGN_VENV ?= .venv-qalign
QALIGN_LOCK := requirements-qalign.lock
QALIGN_STAMP := $(QALIGN_VENV)/.installed-$(shell sha256sum $(QALIGN_LOCK) 2>/dev/null | cut -c1-16)

.PHONY: help setup setup-qalign reproduce rehearse base-model app test test-fast lint report dag docker-build docker-run clean

help: ## Show this help
	@echo "usage: make <target> [PROFILE=demo|paper]"
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

setup: $(STAMP) ## Create .venv from requirements.lock (idempotent; reinstalls only when the lock changes)

$(STAMP): $(LOCK) pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (set PYTHON=/path/to/python3.11)" >&2; exit 2; }
	@test -x $(BIN)/python || { free=$$(df -Pk . | awk 'NR==2 {print $$4}'); \
	  if [ "$$free" -lt $$(( $(VENV_MIN_GB) * 1048576 )) ]; then \
	    echo "error: setup: $$(( free / 1048576 )) GB free on $$(df -P . | awk 'NR==2 {print $$6}'), a new $(VENV) needs about $(VENV_MIN_GB) GB (free space, or VENV_MIN_GB=0 to try anyway)" >&2; exit 2; fi; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@touch $@
	@echo "environment ready: $(VENV) ($$(du -sh $(VENV) | cut -f1))"

setup-qalign: $(QALIGN_STAMP) ## Create .venv-qalign (transformers 4.36) for the published Q-Align/OneAlign checkpoints (paper profile)

$(QALIGN_STAMP): $(QALIGN_LOCK)
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (set PYTHON=/path/to/python3.11)" >&2; exit 2; }
	@test -x $(QALIGN_VENV)/bin/python || $(PYTHON) -m venv $(QALIGN_VENV)
	$(QALIGN_VENV)/bin/python -m pip install --quiet --upgrade "pip>=24"
	$(QALIGN_VENV)/bin/python -m pip install --quiet -r $(QALIGN_LOCK)
	@rm -f $(QALIGN_VENV)/.installed-*
	@touch $@
	@echo "environment ready: $(QALIGN_VENV) ($$(du -sh $(QALIGN_VENV) | cut -f1)); used by the published_qalign stage"

reproduce: setup ## Run the whole pipeline (dvc repro) on PROFILE (default demo); SEEDS=N trains N seeds
	$(BIN)/python scripts/preflight.py --profile $(PROFILE) $(if $(SEEDS),--seeds $(SEEDS))
	$(BIN)/dvc repro
	@echo "report: reports/report.md"

rehearse: setup ## Run the paper profile end to end on CPU with the stand-ins of configs/rehearsal.yaml (rehearsal/)
	$(BIN)/python scripts/rehearse.py
	@echo "report: rehearsal/reports/report.md"

base-model: setup ## Re-pre-train the demo base (frozen `base` stage, ~33 min on 2 cores) and record it in dvc.lock
	$(BIN)/dvc repro model
	$(BIN)/python scripts/pretrain_base.py --init models/init
	$(BIN)/dvc commit --force base
	@echo "commit pretrained/tiny-qwen2vl-base and dvc.lock; the demo's later stages now rerun on it"

MODEL ?= models/dpo/seed42
PORT ?= 7860
app: setup ## Serve a web page to try MODEL (default models/dpo/seed42, any checkpoint or hub id) on 127.0.0.1:PORT
	$(BIN)/python scripts/app.py --model $(MODEL) --port $(PORT)

test: setup ## Run the test suite (what CI runs)
	@$(BIN)/python -m pytest -q; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

test-fast: setup ## Run the tests without the end-to-end pipeline tests
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup ## ruff check + format check
	$(BIN)/ruff check src scripts tests benchmarks
	$(BIN)/ruff format --check src scripts tests benchmarks

report: setup ## Rebuild the report (and whatever it depends on that changed)
	$(BIN)/dvc repro report

dag: setup ## Show the pipeline graph
	$(BIN)/dvc dag

bench: setup ## Time each pipeline stage (benchmarks/results/pipeline.json)
	$(BIN)/python benchmarks/pipeline.py

bench-gpu: setup ## On a CUDA GPU: 7B-sized scoring sweep and a ZeRO-2 LoRA SFT run (benchmarks/results/score_gpu, zero2_step)
	$(BIN)/python benchmarks/score.py --preset qwen2-vl-7b --out benchmarks/results/score_gpu.json
	FORCE_TORCHRUN=1 $(BIN)/python benchmarks/zero2_step.py --out benchmarks/results/zero2_step.json

.PHONY: docker-base docker-test
docker-build: ## Build the CUDA image (docker, or podman/buildah without a daemon); BASE_IMAGE=... for another base
	docker/build_image.sh -t $(IMAGE) $(if $(BASE_IMAGE),--base $(BASE_IMAGE))

docker-base: ## Make localhost/debian-bookworm-base with debootstrap (root), a base for docker-test where no registry is reachable
	docker/build_base.sh localhost/debian-bookworm-base

docker-test: ## Build the image, then in it: leak check, make test-fast and a demo stage (BASE_IMAGE=localhost/debian-bookworm-base here)
	docker/test_image.sh $(if $(BASE_IMAGE),--base $(BASE_IMAGE)) $(if $(filter command line environment,$(origin IMAGE)),-t $(IMAGE))

docker-run: ## Run `make reproduce PROFILE=...` in the image on the host's GPUs, repo mounted at /workspace
	docker run --rm --gpus all --ipc=host -v "$(CURDIR)":/workspace -v "$${HF_HOME:-$$HOME/.cache/huggingface}":/root/.cache/huggingface \
	  -e OPENAI_API_KEY -e DASHSCOPE_API_KEY -e NPROC_PER_NODE=$(GPUS) $(IMAGE) reproduce PROFILE=$(PROFILE)

clean: ## Remove pipeline outputs (keeps .venv, the DVC cache and committed reports)
	rm -rf data models runs .pytest_cache

# --- Scale-out and alignment comparison ------------------------------------------------------------------
STAGE ?= sft
NNODES ?= 1
NODE_RANK ?= 0
MASTER_ADDR ?=
MASTER_PORT ?=
STRATEGIES ?= near_level far_level cross_image on_policy gold_vs_policy
LOSSES ?= sigmoid hinge ipo kto_pair orpo simpo
FT_TYPES ?= full lora
FT_LR ?= 1.0e-3
.PHONY: train-multi compare compare-report compare-finetuning bench bench-gpu

train-multi: setup ## Train STAGE=sft|dpo on GPUS per node via torchrun (multi-node: NNODES NODE_RANK MASTER_ADDR MASTER_PORT)
	@case "$(STAGE)" in sft|dpo) ;; *) echo "error: STAGE=$(STAGE): expected sft or dpo" >&2; exit 2;; esac
	@if [ "$(NNODES)" != 1 ] && { [ -z "$(MASTER_ADDR)" ] || [ -z "$(MASTER_PORT)" ]; }; then \
	  echo "error: NNODES=$(NNODES): set MASTER_ADDR and MASTER_PORT (node 0's address and a free port) on every node" >&2; exit 2; fi
	@# Node 0 runs the DVC stage (lock, checkpoint selection, merge, reports); other nodes only train their share.
	FORCE_TORCHRUN=1 NPROC_PER_NODE=$(GPUS) NNODES=$(NNODES) NODE_RANK=$(NODE_RANK) \
	  $(if $(MASTER_ADDR),MASTER_ADDR=$(MASTER_ADDR)) $(if $(MASTER_PORT),MASTER_PORT=$(MASTER_PORT)) \
	  $(if $(filter 0,$(NODE_RANK)),$(BIN)/dvc repro --force --single-item $(STAGE),$(BIN)/python scripts/train_$(STAGE).py)

compare: setup ## Queue and run dvc experiments over STRATEGIES x LOSSES (demo), then write reports/experiments.md
	@for s in $(STRATEGIES); do for l in $(LOSSES); do \
	  $(BIN)/dvc exp run --queue -n "$$s-$$l" -S profile=$(PROFILE) -S dpo.pair_strategy=$$s -S dpo.loss=$$l || exit 1; \
	done; done
	$(BIN)/dvc exp run --run-all --jobs 1 || echo "warning: some experiments failed: dvc queue status; dvc queue logs NAME" >&2
	$(BIN)/dvc queue status
	$(BIN)/python scripts/compare_experiments.py --out reports/experiments.md

compare-finetuning: setup ## Run SFT+DPO as FT_TYPES (full lora) at sft lr FT_LR as dvc experiments; write reports/finetuning.md
	@for t in $(FT_TYPES); do \
	  $(BIN)/dvc exp run --queue -n "ft-$$t" -S profile=$(PROFILE) -S sft.finetuning_type=$$t -S dpo.finetuning_type=$$t \
	    -S sft.learning_rate=$(FT_LR) || exit 1; \
	done
	$(BIN)/dvc exp run --run-all --jobs 1 || echo "warning: some experiments failed: dvc queue status; dvc queue logs NAME" >&2
	$(BIN)/python scripts/compare_experiments.py --finetuning --match 'ft-*' --out reports/finetuning.md

compare-report: setup ## Rewrite reports/experiments.md from the experiments already run (REVS="c1 c2 HEAD": older commits' too)
	$(BIN)/python scripts/compare_experiments.py $(foreach r,$(REVS),--rev $(r)) --out reports/experiments.md
