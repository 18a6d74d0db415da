"""The vector index: FAISS over the store's segment and video vectors, a cache of SQL.

factory.choose_index      which index (pure numbers -> factory string, nprobe)
faiss_index               the faiss calls, checks, CPU/GPU placement
sync                      build from a VectorSource, catch up with it
snapshot                  atomic save / verified load, with a manifest
recall.recall_at_k        recall against exact search, tolerant of ties
vector_index.VectorIndex  the class a service holds, one per (level, model_version)
index_set.IndexSet        a VectorIndex per level of one model version, synced and saved
source.VectorSource       what the index needs of a store (a Protocol)
"""

from services.index.catalogue import Catalogue, CatalogueSync, Places, VideoInfo, sync_catalogue
from services.index.factory import (
    DEFAULT_EXACT_THRESHOLD,
    DEFAULT_MEMORY_BUDGET_BYTES,
    IndexChoice,
    choose_index,
    rebuild_reason,
)
from services.index.faiss_index import gpu_available
from services.index.index_set import IndexSet, LevelStatus
from services.index.recall import recall_at_k
from services.index.snapshot import Manifest, SnapshotError
from services.index.source import VectorSource
from services.index.sync import BuildResult, CatchUp, build_from_source, catch_up
from services.index.vector_index import (
    IndexNotReadyError,
    IndexOutOfSyncError,
    LoadReport,
    SyncResult,
    VectorIndex,
)

__all__ = [
    "DEFAULT_EXACT_THRESHOLD",
    "DEFAULT_MEMORY_BUDGET_BYTES",
    "BuildResult",
    "Catalogue",
    "CatalogueSync",
    "Places",
    "VideoInfo",
    "sync_catalogue",
    "CatchUp",
    "IndexChoice",
    "IndexNotReadyError",
    "IndexOutOfSyncError",
    "IndexSet",
    "LevelStatus",
    "LoadReport",
    "Manifest",
    "SnapshotError",
    "SyncResult",
    "VectorIndex",
    "VectorSource",
    "build_from_source",
    "catch_up",
    "choose_index",
    "gpu_available",
    "rebuild_reason",
    "recall_at_k",
]
