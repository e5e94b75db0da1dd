# The two commands the README promises, plus helpers. Everything runs inside .venv.
DEMO_DIR ?= runs/demo-$(shell date +%Y%m%d-%H%M%S)
BIN := .venv/bin

.PHONY: setup demo test lint bench

setup:  ## create .venv with every dependency (idempotent)
	bash scripts/setup.sh

demo: setup  ## a short real training run on SafetyPointGoal1 pixels, then its evaluation
	$(BIN)/workbench train --preset cpu --task SafetyPointGoal1-v0 --run-dir $(DEMO_DIR)
	$(BIN)/workbench eval $(DEMO_DIR) --episodes 5
	@echo "For comparison, the shipped agent (checkpoints/pointgoal1-barrier) on held-out episodes:"
	$(BIN)/workbench eval checkpoints/pointgoal1-barrier --episodes 5
	@echo "Open the dashboard on both with:  $(BIN)/workbench dashboard $(dir $(DEMO_DIR))  (and: $(BIN)/workbench dashboard checkpoints)"

test:  ## set up with every extra (Ray too), lint and type-check, then every test (real environments, notebooks, a real browser and a two-node Ray cluster included)
	bash scripts/setup.sh dashboard,notebooks,tensorboard,dev,distributed
	bash scripts/setup-browser.sh
	$(BIN)/ruff check workbench tests app notebooks
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/workbench bench --json
