# Conveniences around tasks.py, which needs nothing but Python 3.11+ (see README).
PYTHON ?= python3

.PHONY: run test lint bench clean

run:
	$(PYTHON) tasks.py run

test:
	$(PYTHON) tasks.py test

lint:
	$(PYTHON) tasks.py lint

bench:
	$(PYTHON) tasks.py bench

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache
