# One entry point for people and CI. Everything runs inside .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch 2.13.0 first and pinned: a bare `torch` requirement would let pip choose a
# newer (multi-GB CUDA) build. Override, e.g. TORCH="torch==2.11.0", on GPU hosts.
TORCH  ?= torch==2.13.0
VIDEOS ?=
PYTEST_ARGS ?=
# train-default: the labelled clips (MANIFEST.csv + videos) and where runs are written.
CLIPS     ?= ../shared/data/clips
TRAIN_DIR ?= runs

.PHONY: setup anchors anchors-apt test lint format bench demo clean proto train-default

setup: $(BIN)/sora

$(BIN)/sora: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

# The optional copy-detection anchors of `sora eval neardup` (vPDQ, videohash). vpdq compiles
# against FFmpeg's libraries: on Debian/Ubuntu first run (as root) the apt line in
# docs/EVAL.md; `make anchors-apt` runs it.
ANCHORS_APT := g++ cmake pkg-config python3-dev libavcodec-dev libavformat-dev \
	libavutil-dev libswscale-dev libavdevice-dev libavfilter-dev libswresample-dev
anchors: setup
	$(BIN)/python -m pip install -q -e ".[dev,anchors]"

anchors-apt:
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends $(ANCHORS_APT)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	mkdir -p bench/results
	$(BIN)/python bench/bench_encoder.py --json bench/results/encoder.json
	$(BIN)/python bench/bench_decode.py --json bench/results/decode.json
	$(BIN)/python bench/bench_index.py --json bench/results/index.json
	$(BIN)/python bench/bench_ingest.py --json bench/results/ingest.json
	$(BIN)/python bench/bench_search.py --json bench/results/search.json

# The README's first command: set up, start the embedded service, ingest sample videos
# made with ffmpeg (or VIDEOS=dir), search by a transformed clip, show the hits.
demo: setup
	$(BIN)/sora demo $(if $(VIDEOS),--videos "$(VIDEOS)")

# Generated gRPC code is committed; tests/test_proto_stale.py fails when it is out of date.
PROTO_OUT := services/api/gen
proto: setup
	$(BIN)/python -m grpc_tools.protoc -I proto --python_out=$(PROTO_OUT) \
		--grpc_python_out=$(PROTO_OUT) --pyi_out=$(PROTO_OUT) proto/sora/v1/sora.proto
	# protoc writes imports relative to the proto root; make them absolute in our package.
	sed -i 's/^from sora\.v1 import/from services.api.gen.sora.v1 import/' \
		$(PROTO_OUT)/sora/v1/sora_pb2_grpc.py

# Reproduces the shipped encoder, sora_encoder/checkpoints/sora-s, in one command:
# synthetic videos, the sora-s default recipe on the train split of CLIPS plus them, then
# a fp16 export (<= 25 MB, vectors checked against the fp32 run) over the shipped folder.
train-default: setup
	$(BIN)/python -m sora_encoder.train.synthetic $(TRAIN_DIR)/synthetic --count 28 --seed 0
	$(BIN)/sora train encoder --manifest $(CLIPS)/MANIFEST.csv --split train \
		--also $(TRAIN_DIR)/synthetic --config sora_encoder/train/recipes/sora-s-default.json \
		--out $(TRAIN_DIR)/sora-s-default --cache $(TRAIN_DIR)/cache
	$(BIN)/sora checkpoint export $(TRAIN_DIR)/sora-s-default sora_encoder/checkpoints/sora-s --force

clean:
	rm -rf $(VENV) .sora-demo .pytest_cache .ruff_cache bench/results
