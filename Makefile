# mmimic: every target installs into .venv first if needed. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is installed before the package so that the pinned build is the one kept. On these CPU
# machines `pip install torch==2.13.0` takes the local CPU file; on a GPU machine it is the normal
# CUDA build. CPU-only users who want to skip the CUDA wheels can set TORCH_PIP_ARGS to PyTorch's CPU index.
TORCH          ?= torch==2.13.0
TORCH_PIP_ARGS ?=
# Optional overrides of the experiment config: MODEL, DEVICE (auto|cpu|cuda|cuda:K),
# BACKEND (auto|warp|mujoco: the simulator; auto = warp on CUDA, MuJoCo's C engine on CPU), ENVS, STEPS.
RUNS   ?= runs
RUN_FLAGS = $(if $(MODEL),--model $(MODEL)) $(if $(DEVICE),--device $(DEVICE)) $(if $(BACKEND),--backend $(BACKEND)) \
            $(if $(ENVS),--num-envs $(ENVS)) $(if $(STEPS),--steps $(STEPS))

.DEFAULT_GOAL := help
.PHONY: help install test train train-bimanual train-fullbody train-smoke finetune eval play posture bench doctor motions tensorboard clean

help: ## list the targets
	@echo "mmimic make targets (variables: DEVICE=auto|cpu|cuda|cuda:K, BACKEND=auto|warp|mujoco, MODEL=arm26|bimanual|myofullbody, NPROC=N (train: N processes)):"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml setup.cfg | $(BIN)/python
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install $(TORCH_PIP_ARGS) "$(TORCH)"
	$(BIN)/python -m pip install -e ".[test]"
	@touch $@

install: $(VENV)/.installed ## create .venv and install mmimic with its dependencies (~2 min, once)

test: install ## run the test suite on CPU (~8 min; the first run on a machine also compiles warp kernels)
	$(BIN)/python -m pytest

# Training: experiments/<name>.yaml plus ARGS="key=value ..." overrides; DEVICE picks the device,
# NPROC=N trains data-parallel in N processes (torchrun; one GPU each on CUDA).
train_cmd = $(BIN)/mmimic train --config experiments/$(1).yaml $(if $(DEVICE),--device $(DEVICE)) \
            $(if $(BACKEND),--backend $(BACKEND)) $(if $(NPROC),--nproc $(NPROC)) out_dir=$(RUNS) $(ARGS)

train: install ## the bimanual generalist on the demo motions (experiments/bimanual.yaml; cuda if present)
	$(call train_cmd,bimanual)

train-bimanual: train ## same as make train

train-fullbody: install ## the 416-muscle full body (experiments/fullbody.yaml; GPU recommended)
	$(call train_cmd,fullbody)

train-smoke: install ## the small arm tracks synthesized reaches on CPU in a few minutes (experiments/smoke.yaml)
	$(call train_cmd,smoke)

finetune: install ## fine-tune CKPT (run dir or .pt) on MOTIONS (dir of retargeted clips): experiments/finetune.yaml
	@test -n "$(CKPT)" -a -n "$(MOTIONS)" || { echo "usage: make finetune CKPT=runs/RUN MOTIONS=data/motions/MODEL"; exit 2; }
	$(call train_cmd,finetune) init_from=$(CKPT) env.motions=$(MOTIONS)

eval: install ## evaluate RUN (run dir or .pt) on its held-out demo clips: RUN/eval/metrics.json + .csv (ARGS: more options)
	@test -n "$(RUN)" || { echo "usage: make eval RUN=runs/RUN [ARGS='--motions DIR --episodes-per-clip 3']"; exit 2; }
	$(BIN)/mmimic eval $(RUN) $(if $(DEVICE),--device $(DEVICE)) $(if $(BACKEND),--backend $(BACKEND)) $(ARGS)

play: install ## mp4 video of RUN (run dir or .pt) on its held-out demo clips: VIDEO, default RUN/videos/play.mp4 (ARGS: more options)
	@test -n "$(RUN)" || { echo "usage: make play RUN=runs/RUN [VIDEO=out.mp4] [ARGS='--motions DIR --clips a,b --width 320 --height 240']"; exit 2; }
	$(BIN)/mmimic play $(RUN) $(if $(VIDEO),--video $(VIDEO)) $(if $(DEVICE),--device $(DEVICE)) $(if $(BACKEND),--backend $(BACKEND)) $(ARGS)

posture: install ## MuscleEnv's posture task with a random policy (experiments/posture.yaml)
	$(BIN)/mmimic posture --config experiments/posture.yaml --out $(RUNS) $(RUN_FLAGS)

bench: MODEL ?= bimanual
bench: install ## raw simulator vs MuscleEnv throughput table + JSON in benchmarks/results/ (BACKEND=warp,mujoco: both)
	$(BIN)/mmimic bench --model $(MODEL) $(if $(DEVICE),--device $(DEVICE)) $(if $(BACKEND),--backend $(BACKEND))

doctor: install ## self-check: versions, devices, per model CUDA graphs, parity, NaN, memory, steps/s, syncs; doctor-DEVICE.json
	$(BIN)/mmimic doctor $(if $(DEVICE),--device $(DEVICE)) $(if $(BACKEND),--backend $(BACKEND)) \
		$(if $(MODEL),--models $(MODEL)) $(if $(ENVS),--num-envs $(ENVS)) $(ARGS)

DATA ?= data
motions: install ## synthesize the demo clips (AMASS format) and retarget them onto bimanual and myofullbody (~3 min CPU)
	$(BIN)/mmimic motion synth --out $(DATA)/synth --count 3
	$(BIN)/mmimic retarget $(DATA)/synth --model bimanual --out $(DATA)/motions/bimanual --jobs 2
	$(BIN)/mmimic retarget $(DATA)/synth --model myofullbody --out $(DATA)/motions/myofullbody --jobs 2

tensorboard: install ## serve the TensorBoard of runs/ on port 6006
	$(BIN)/tensorboard --logdir $(RUNS) --port 6006

clean: ## remove the venv, caches and build files (keeps runs/ and benchmark results)
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
