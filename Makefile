# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

# The boards' MicroPython API as type stubs, for the static check of the
# firmware (tests/test_board_api.py): a folder per board, since each package
# installs the same module names (machine, time, ...)
BOARD_STUBS := esp32 rp2
BOARD_STUBS_VERSION := 1.29.0.post1

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	for b in $(BOARD_STUBS); do \
	    $(BIN)/pip install --quiet --upgrade --target $(VENV)/board-stubs/$$b \
	        micropython-$$b-stubs==$(BOARD_STUBS_VERSION) || exit 1; done
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/pollen demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 3 --dist loadscope

clean:
	rm -rf $(VENV) build *.egg-info
