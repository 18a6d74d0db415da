"""Stage 1, options: a request's options and query vectors checked, before any search.

    check_options(SearchOptions)          -> the same, normalised (tags stripped)
    query_vector(values, dim, version)    -> (d,) unit float32
    query_matrix(batch, dim, version)     -> (n, d) unit float32, 1 <= n <= MAX_BATCH
    check_batch_size(n)

Every refusal is an InvalidArgumentError whose message says what to change.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from services.errors import InvalidArgumentError

from .types import REGION_MODES, SearchOptions

# unit()'s one dot product (and query_matrix's norms) overflow for values past ~1e19,
# which are then measured again; the warning numpy prints says nothing to an operator
# (an errstate block around every query's dot product cost more than the dot product)
warnings.filterwarnings("ignore", "overflow encountered in", RuntimeWarning, __name__)

MAX_TOP_K = 1000
# Queries in one SearchBatch call: 256 x top_k 1000 hits stays within the default 64 MiB
# message cap with room, and one call's FAISS search stays well under a second at 10^6.
MAX_BATCH = 256


# check_options' answers by the options object (kept here, so its id is not reused while
# it is): the servicer hands the same SearchOptions for the same options message call
# after call (converters.search_options_from_pb), and checking it again cost ~5 us.
_CHECKED: dict[int, tuple[SearchOptions, SearchOptions]] = {}
_CHECKED_MAX = 1024
_CHECKED_MAX_ITEMS = 32  # tags, asset ids and metadata pairs of options worth keeping


def check_options(o: SearchOptions) -> SearchOptions:
    known = _CHECKED.get(id(o))
    if known is not None and known[0] is o:
        return known[1]
    checked = _check_options(o)
    if len(o.tags) + len(o.external_ids) + len(o.metadata_items) <= _CHECKED_MAX_ITEMS:
        if len(_CHECKED) >= _CHECKED_MAX:
            _CHECKED.clear()
        _CHECKED[id(o)] = (o, checked)
    return checked


def _check_options(o: SearchOptions) -> SearchOptions:
    if o.level not in ("video", "segment"):
        raise InvalidArgumentError(f"level {o.level!r}: expected 'video' or 'segment'")
    if not 1 <= o.top_k <= MAX_TOP_K:
        raise InvalidArgumentError(f"top_k {o.top_k}: expected 1..{MAX_TOP_K}")
    if o.min_score is not None and not -1.0 <= o.min_score <= 1.0:
        raise InvalidArgumentError(f"min_score {o.min_score}: expected a cosine in [-1, 1]")
    if o.regions not in REGION_MODES:
        raise InvalidArgumentError(f"regions {o.regions!r}: expected one of {REGION_MODES}")
    tags = tuple(t.strip() for t in o.tags)
    if any(not t for t in tags):
        raise InvalidArgumentError("tags must be non-empty strings")
    external_ids = tuple(e.strip() for e in o.external_ids)
    if any(not e for e in external_ids):
        raise InvalidArgumentError("external_ids must be non-empty strings")
    items = tuple(sorted((k.strip(), v) for k, v in o.metadata_items))
    if any(not k for k, _ in items):
        raise InvalidArgumentError("user metadata filter keys must be non-empty strings")
    return replace(o, tags=tags, external_ids=external_ids, metadata_items=items)


def check_batch_size(n: int, what: str = "query vectors or video ids") -> None:
    if n == 0:
        raise InvalidArgumentError(f"the batch is empty: give 1..{MAX_BATCH} {what}")
    if n > MAX_BATCH:
        raise InvalidArgumentError(
            f"the batch has {n} queries; at most {MAX_BATCH} per call: split it into "
            f"{-(-n // MAX_BATCH)} calls"
        )


def unit(values: np.ndarray, what: str) -> np.ndarray:
    """values (float32) / their norm, a new array. One dot product answers the usual case:
    its square is finite and positive only when every value is finite and some is not 0
    (float32 squares of values past ~1e19 overflow, and below ~1e-23 vanish: the rare
    vector that does so is measured again in float64)."""
    square = float(np.dot(values, values))
    if 0.0 < square < math.inf:
        return values / np.float32(math.sqrt(square))
    if not np.all(np.isfinite(values)):
        raise InvalidArgumentError(f"{what} contains NaN or infinity")
    wide = values.astype(np.float64)  # a norm float32 cannot hold, or subnormal values
    square = float(np.dot(wide, wide))
    if square == 0.0:
        raise InvalidArgumentError(f"{what} is all zeros")
    return (wide / math.sqrt(square)).astype(np.float32)


def query_vector(
    values: Sequence[float] | np.ndarray,
    dim: int | None,
    version: str | None,
    what: str = "the query vector",
) -> np.ndarray:
    """(d,) unit; `dim` None (nothing indexed at this level) skips the dimension check."""
    xq = np.asarray(values, dtype=np.float32).reshape(-1)
    if xq.size == 0:
        raise InvalidArgumentError(f"{what} is empty")
    if dim is not None and xq.size != dim:
        raise InvalidArgumentError(
            f"{what} has {xq.size} values; model version {version} makes {dim}-d vectors"
        )
    return unit(xq, what)


def query_matrix(
    batch: Sequence[Sequence[float] | np.ndarray], dim: int | None, version: str | None
) -> np.ndarray:
    """(n, d) unit rows of a batch; the first bad one is named by its position."""
    check_batch_size(len(batch))
    sizes = [np.size(v) for v in batch]
    if len(set(sizes)) == 1 and sizes[0] > 0 and (dim is None or sizes[0] == dim):
        # the usual case, checked and normalised as one array (no Python work per row)
        X = np.asarray(batch, dtype=np.float32).reshape(len(batch), -1)  # (n, d)
        with np.errstate(over="ignore"):  # once a batch (a row past ~1e19: measured again)
            norms = np.linalg.norm(X, axis=1)  # (n,); inf where a row's squares overflow
        if np.all(np.isfinite(X)) and np.all((norms > 0) & (norms < np.inf)):
            return (X / norms[:, None]).astype(np.float32)
    rows = [query_vector(v, dim, version, f"query {i} of the batch") for i, v in enumerate(batch)]
    sizes = [r.size for r in rows]
    if len(set(sizes)) > 1:
        raise InvalidArgumentError(
            f"the batch's vectors differ in length ({sorted(set(sizes))}): give one model "
            "version's vectors"
        )
    return np.stack(rows)  # (n, d)
