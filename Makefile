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

.PHONY: setup anchors anchors-apt test chaos lint format bench demo clean proto train-default milvus-venv

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

# The fault and attack cases of docs/RELIABILITY.md (issue #9), a subset of `make test`:
# killed workers and servers, a broker that loses its queue, bad snapshots, database faults,
# hostile media and clients, degenerate libraries. Add a case here and to the doc together.
CHAOS_TESTS := \
	tests/test_workers_ingest.py \
	tests/test_serve_embedded.py \
	tests/test_index_snapshot.py::test_unusable_snapshot_is_rebuilt_from_source \
	tests/test_index_snapshot.py::test_snapshot_of_another_model_version_is_not_used \
	tests/test_index_snapshot.py::test_misaligned_after_catch_up_is_rebuilt \
	tests/test_index_snapshot.py::test_crash_mid_write_leaves_previous_snapshot \
	tests/test_index_snapshot.py::test_a_snapshot_of_another_store_with_the_same_count_is_rebuilt \
	tests/test_index_snapshot.py::test_a_restored_store_that_reused_ids_is_rebuilt \
	tests/test_index_vector_index.py::test_inconsistent_source_raises_rather_than_serving \
	tests/test_index_vector_index.py::test_empty_collection \
	tests/test_api_services.py::test_a_snapshot_folder_of_another_database_is_not_served \
	tests/test_api_services.py::test_status_codes_are_mapped_in_one_place \
	tests/test_api_services.py::test_url_allow_list_matches_scheme_host_port_and_path \
	tests/test_api_services.py::test_url_ingest_downloads_into_uploads_with_a_cap \
	tests/test_api_services.py::test_a_cancelled_stream_leaves_no_file \
	tests/test_api_services.py::test_watch_stops_when_the_client_goes_away \
	tests/test_api_services.py::test_the_first_ready_video_is_searchable_before_the_keepers_next_sync \
	tests/test_api_services.py::test_a_search_of_a_video_not_ready_yet_does_not_sync \
	tests/test_workers_units.py::test_reconciler_resends_lost_and_abandoned_jobs \
	tests/test_workers_units.py::test_database_down_is_retried_up_to_the_cap \
	tests/test_store_jobs.py::test_claim_refuses_a_live_lease_of_another_owner_and_grants_after_expiry \
	tests/test_store_jobs.py::test_duplicate_delivery_writes_one_set_of_segments \
	tests/test_store_jobs.py::test_fail_job_transient_requeues_and_permanent_fails_the_video \
	tests/test_store_jobs.py::test_late_failure_after_success_is_ignored \
	tests/test_store_jobs.py::test_reconciler_finds_expired_leases_and_requeues_them \
	tests/test_store_jobs.py::test_a_job_that_keeps_losing_its_worker_fails_after_max_attempts \
	tests/test_store_jobs.py::test_completion_for_a_deleted_video_is_refused_and_writes_nothing \
	tests/test_store_jobs.py::test_concurrent_claims_grant_the_job_once \
	tests/test_store_videos.py::test_concurrent_registrations_of_the_same_bytes_make_one_video \
	tests/test_store_videos.py::test_a_registration_waits_for_a_concurrent_one_and_returns_its_row \
	tests/test_store_videos.py::test_insert_race_rolls_back_to_a_savepoint_and_returns_the_winner \
	tests/test_store_migrations.py::test_concurrent_migrations_from_two_processes_starting_at_once \
	tests/test_media_hostile.py \
	tests/test_media_probe.py::test_duration_limit \
	tests/test_media_probe.py::test_resolution_limits \
	tests/test_media_probe.py::test_resolution_limit_applies_to_the_rotated_size \
	tests/test_media_probe.py::test_file_size_is_checked_before_ffmpeg_runs \
	tests/test_media_probe.py::test_format_outside_the_allow_list \
	tests/test_media_probe.py::test_frame_over_the_pixel_cap_is_named_when_the_header_has_no_size \
	tests/test_media_decode.py::test_decode_timeout_kills_ffmpeg \
	tests/test_media_decode.py::test_file_changed_since_probe \
	tests/test_api_hostile.py \
	tests/test_api_server.py::test_every_method_requires_the_bearer_token \
	tests/test_api_server.py::test_without_a_token_only_loopback_is_served \
	tests/test_api_server.py::test_not_found_invalid_argument_and_failed_precondition \
	tests/test_api_server.py::test_database_down_is_unavailable \
	tests/test_api_server.py::test_calls_beyond_the_concurrency_cap_are_resource_exhausted \
	tests/test_api_server.py::test_messages_over_the_size_limit_are_refused \
	tests/test_api_server.py::test_paths_outside_the_roots_are_refused_before_anything_runs \
	tests/test_api_server.py::test_path_ingest_without_roots_says_how_to_allow \
	tests/test_api_server.py::test_upload_over_the_cap_is_refused_and_leaves_no_file \
	tests/test_api_server.py::test_health_is_not_serving_until_the_index_is_loaded \
	tests/test_api_server.py::test_search_with_nothing_indexed_is_empty \
	tests/test_api_server.py::test_search_in_a_one_video_library_by_its_id_and_by_a_clip_of_it \
	tests/test_alignment.py::test_adaptive_threshold_of_a_library_that_is_all_the_query_still_aligns_a_copy

chaos: setup
	$(BIN)/python -m pytest $(CHAOS_TESTS) $(PYTEST_ARGS)

# lint-imports: the layering contract ([tool.importlinter] in pyproject.toml,
# docs/ARCHITECTURE.md); tests/test_layers.py also runs it, and shows that it fails.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

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
	$(BIN)/python bench/bench_duplicates.py --json bench/results/duplicates.json

# Milvus Lite, the competitor bench_search.py measures with --milvus-python: its own venv
# (the project does not depend on pymilvus), the pins of bench/milvus_lite.py.
MILVUS_VENV := runs/milvus-venv
milvus-venv:
	python3 -m venv $(MILVUS_VENV)
	$(MILVUS_VENV)/bin/pip install -q "milvus-lite==2.5.1" "pymilvus==2.5.18" "setuptools<81" numpy

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

# Reproduces the shipped encoder, sora_encoder/checkpoints/sora-s, in one command, in three
# stages (docs/TRAINING.md, docs/MODEL.md): synthetic videos; the sora-s default recipe on
# the train split of CLIPS plus them; the sora-s-continue recipe (KoLeo, stronger photometric
# views) from that run's fp16 export; the sora-s-gpu recipe (112-px views, batch 128, 240
# epochs, plus videos made from wallpaper photos) from stage 2's export; a fp16 export;
# PCA whitening fitted on the train split's segment vectors, written over the shipped folder
# with its copy calibration (sora_encoder/whitening.py). All stages share one window cache.
TRAIN_ENCODER = $(BIN)/sora train encoder --manifest $(CLIPS)/MANIFEST.csv --split train \
	--also $(TRAIN_DIR)/synthetic --cache $(TRAIN_DIR)/cache
# Stage 3 (sora-s-gpu.json) wants a GPU: about 6 minutes on an H200, half a day on 2 CPU cores.
train-default: setup $(TRAIN_DIR)/walls
	$(BIN)/python -m sora_encoder.train.synthetic $(TRAIN_DIR)/synthetic --count 28 --seed 0
	$(TRAIN_ENCODER) --config sora_encoder/train/recipes/sora-s-default.json \
		--out $(TRAIN_DIR)/sora-s-default
	$(BIN)/sora checkpoint export $(TRAIN_DIR)/sora-s-default $(TRAIN_DIR)/sora-s-stage1 --force
	$(TRAIN_ENCODER) --config sora_encoder/train/recipes/sora-s-continue.json \
		--init-from $(TRAIN_DIR)/sora-s-stage1 --out $(TRAIN_DIR)/sora-s-continue
	$(BIN)/sora checkpoint export $(TRAIN_DIR)/sora-s-continue $(TRAIN_DIR)/sora-s-stage2 --force
	$(BIN)/python -m sora_encoder.train.stills $(TRAIN_DIR)/stills $(TRAIN_DIR)/walls --every 2
	$(TRAIN_ENCODER) --also $(TRAIN_DIR)/stills --config sora_encoder/train/recipes/sora-s-gpu.json \
		--init-from $(TRAIN_DIR)/sora-s-stage2 --out $(TRAIN_DIR)/sora-s-gpu
	$(BIN)/sora checkpoint export $(TRAIN_DIR)/sora-s-gpu $(TRAIN_DIR)/sora-s-stage3 --force
	$(BIN)/sora checkpoint whiten $(TRAIN_DIR)/sora-s-stage3 sora_encoder/checkpoints/sora-s \
		--manifest $(CLIPS)/MANIFEST.csv --force

# Still photos for stage 3: Debian's wallpaper / background packages only (never images from
# other packages: those are kept for an independent evaluation). apt-get download needs no root.
WALL_PKGS := gnome-backgrounds mate-backgrounds plasma-workspace-wallpapers ukui-wallpapers \
	lomiri-wallpapers sway-backgrounds
$(TRAIN_DIR)/walls:
	rm -rf $@.tmp && mkdir -p $@.tmp
	cd $@.tmp && apt-get download $(WALL_PKGS) && for f in *.deb; do dpkg -x "$$f" .; done && rm -f *.deb
	mv $@.tmp $@

clean:
	rm -rf $(VENV) .sora-demo .pytest_cache .ruff_cache bench/results
