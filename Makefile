# The two commands of the README. Both set everything up first (scripts/setup.sh).
.PHONY: setup train test

setup:
	@bash scripts/setup.sh

train: setup
	.venv/bin/tokenizer-zoo list

test: setup
	.venv/bin/python -m pytest -n 2
