# Shortcuts; the README's two commands remain the reference.
PY := .venv/bin
TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/postgres

.PHONY: install test lint migrate run-once
install:
	python3 -m venv .venv && $(PY)/pip install torch==2.13.0 -e ".[test]"
test:
	TEST_DATABASE_URL=$(TEST_DATABASE_URL) $(PY)/pytest -q
lint:
	$(PY)/ruff check . && $(PY)/ruff format --check .
migrate:
	$(PY)/prcrs-batch init-db
run-once:
	$(PY)/prcrs-batch run
