"""Ingest: a server-side path, an allowed URL, or uploaded bytes -> a registered video and a
job sent to the workers.

    path    realpath (symlinks and '..' resolved) inside an allowed root? --no--> PERMISSION_DENIED
            --> open, check again through the open file --> sha256 --> register
    URL     on the allow-list (scheme, host, port, path prefix; every redirect too)?
            --> download into $SORA_HOME/uploads (size cap, a wall-clock deadline, a
            minimum rate, the client's cancel noticed) --> register
    upload  chunks --> $SORA_HOME/uploads/.incoming/<random>.part (sha256 as it streams,
            size cap) --> register as uploads/<sha256><ext> --> renamed there
    register: one transaction (`register_video`, idempotent on the bytes), then, after the
            commit, `Dispatcher.send(job ids)`; the job id is None when the bytes are known.

Every refusal happens before a byte is hashed or a file registered; a failed, refused or
cancelled upload or download leaves no file behind (and partial files a killed server
left are swept at start-up). No ffmpeg runs here: the workers decode.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import posixpath
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from services.errors import (
    CallCancelledError,
    DeadlineExceededError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnavailableError,
)
from services.settings import Settings
from services.store import Store, VideoStatus, get_video, is_url, local_path, register_video
from sora_encoder.files import VIDEO_SUFFIXES

from .call import Call
from .errors import status_of

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
# Anything but printable ASCII: CR/LF would split the HTTP request line (http.client raises
# InvalidURL, once an INTERNAL), and spaces or non-ASCII must come percent-encoded.
_URL_BAD_CHAR = re.compile(r"[^\x21-\x7e]")
MAX_BULK_ITEMS = 10_000


class JobSender(Protocol):
    """What ingest needs of `services.jobs.Dispatcher`."""

    def send(self, job_ids: Iterable[int]) -> list[int]: ...


@dataclass(frozen=True)
class NewVideo:
    uri: str  # a path or URL (ingest), or the client's file name (upload)
    title: str | None = None
    collection: str | None = None
    tags: tuple[str, ...] = ()
    external_id: str | None = None  # unique per collection (services/store/videos.py)
    user_metadata: Mapping[str, str] = field(default_factory=dict)
    original_path: str | None = None  # uploads: the file's path on the client's disk


@dataclass(frozen=True)
class IngestResult:
    video_id: int
    job_id: int | None  # None: nothing to do (the same bytes are known)
    created: bool
    status: VideoStatus


@dataclass(frozen=True)
class ItemResult:
    uri: str
    result: IngestResult | None = None
    error: str = ""
    error_code: str = ""  # the gRPC status code name, as the single-item call would give


@dataclass(frozen=True)
class Origin:
    """Where the user knows the file: its name and path (or URL) as they gave it."""

    name: str | None
    path: str | None


@dataclass(frozen=True)
class ReceivedFile:
    path: Path
    sha256: str
    size: int


def _too_big(size: int, cap: int, what: str) -> ResourceExhaustedError:
    return ResourceExhaustedError(
        f"{what} of {size} bytes is over the server's cap of {cap} bytes ($SORA_MAX_UPLOAD_BYTES)"
    )


def receive_file(
    chunks: Iterable[bytes],
    directory: Path,
    *,
    cap: int,
    call: Call,
    declared_size: int | None = None,
    what: str = "the upload",
) -> ReceivedFile:
    """Stream `chunks` into a new temporary file in `directory`, hashing as it goes ->
    (temporary path, sha256, size). RESOURCE_EXHAUSTED as soon as the bytes pass `cap`;
    INVALID_ARGUMENT if they end short of `declared_size` or are empty. On any failure the
    partial file is removed. The caller renames or deletes the file."""
    if declared_size is not None and declared_size > cap:
        raise _too_big(declared_size, cap, what)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f"{uuid.uuid4().hex}.part"
    h = hashlib.sha256()
    size = 0
    try:
        with open(tmp, "xb") as f:
            for chunk in chunks:
                size += len(chunk)
                if size > cap:
                    raise _too_big(size, cap, f"{what} (so far)")
                h.update(chunk)
                f.write(chunk)
                call.check()
            f.flush()
            os.fsync(f.fileno())
        call.check()  # a cancelled client stream may just end: never keep what it sent
        if size == 0:
            raise InvalidArgumentError(f"{what} carried no bytes")
        if declared_size is not None and declared_size and size != declared_size:
            raise InvalidArgumentError(
                f"{what} ended after {size} bytes but its metadata declared {declared_size}"
            )
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return ReceivedFile(tmp, h.hexdigest(), size)


def sweep_partial_files(
    directories: Iterable[Path], *, older_than_s: float, now: float | None = None
) -> list[Path]:
    """Remove the `*.part` files in `directories` last written more than `older_than_s`
    ago -> their paths. A server killed mid-upload leaves its partial file behind; one
    younger than the longest allowed upload may still be written by another replica that
    shares the folder, so it stays."""
    now = time.time() if now is None else now
    removed = []
    for directory in directories:
        if not directory.is_dir():
            continue
        for path in directory.glob("*.part"):
            try:
                if now - path.stat().st_mtime > older_than_s:
                    path.unlink()
                    removed.append(path)
            except FileNotFoundError:
                continue  # removed meanwhile (by another replica's sweep)
    if removed:
        logger.info(
            "removed %d partial upload file(s) older than %.0f s ($SORA_UPLOAD_TIME_LIMIT): %s",
            len(removed),
            older_than_s,
            ", ".join(str(p) for p in removed),
        )
    return removed


def _suffix(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return suffix if suffix in VIDEO_SUFFIXES else ""


def _url_path_is_under(path: str, prefix_path: str) -> bool:
    if prefix_path in ("", "/"):
        return True
    if prefix_path.endswith("/"):
        return path.startswith(prefix_path)
    return path == prefix_path or path.startswith(prefix_path + "/")


def _socket_of(response: http.client.HTTPResponse) -> socket.socket | None:
    """The response's socket, to bound each receive by the time left; http.client offers
    no public handle on it (None then: each receive is bounded by the opening time-out)."""
    return getattr(getattr(response.fp, "raw", None), "_sock", None)


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


class IngestService:
    def __init__(
        self,
        store: Store,
        dispatcher: JobSender,
        *,
        uploads_dir: Path,
        allowed_roots: Sequence[Path] = (),
        allowed_url_prefixes: Sequence[str] = (),
        max_upload_bytes: int = 2 << 30,
        url_timeout_s: float = 60.0,
        url_min_rate: int = 16 * 1024,
        url_rate_window_s: float = 10.0,
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.uploads_dir = Path(uploads_dir)
        self.incoming_dir = self.uploads_dir / ".incoming"
        # Roots are compared by their real paths (a root that is itself a symlink counts
        # as its target).
        self.allowed_roots = tuple(Path(os.path.realpath(r)) for r in allowed_roots)
        self.allowed_url_prefixes = tuple(allowed_url_prefixes)
        for prefix in self.allowed_url_prefixes:
            parts = urllib.parse.urlsplit(prefix)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"URL prefix {prefix!r}: expected http(s)://host[:port][/path]")
        logger.info(
            "ingest allowed from roots [%s] and URL prefixes [%s]",
            ", ".join(map(str, self.allowed_roots)),
            ", ".join(self.allowed_url_prefixes),
        )
        self.max_upload_bytes = max_upload_bytes
        self.url_timeout_s = url_timeout_s
        self.url_min_rate = url_min_rate  # bytes/s over each window; 0: no minimum
        self.url_rate_window_s = url_rate_window_s

    @classmethod
    def from_settings(cls, store: Store, dispatcher: JobSender, settings: Settings):
        return cls(
            store,
            dispatcher,
            uploads_dir=settings.uploads_dir,
            allowed_roots=settings.allowed_roots,
            allowed_url_prefixes=settings.allowed_url_prefixes,
            max_upload_bytes=settings.max_upload_bytes,
            url_timeout_s=settings.url_timeout_s,
            url_min_rate=settings.url_min_rate,
            url_rate_window_s=settings.url_rate_window_s,
        )

    # ------------------------------------------------------------------ public calls
    def ingest_uri(self, video: NewVideo, call: Call | None = None) -> IngestResult:
        result = self._ingest_uri(video, call or Call())
        self._dispatch([result])
        return result

    def upload(
        self,
        video: NewVideo,
        chunks: Iterable[bytes],
        *,
        declared_size: int | None = None,
        call: Call | None = None,
    ) -> IngestResult:
        """`video.uri` is the client's file name (kept as the title when none is given)."""
        call = call or Call()
        received = receive_file(
            chunks,
            self.incoming_dir,
            cap=self.max_upload_bytes,
            call=call,
            declared_size=declared_size,
        )
        # the client's name may come with its path (a Windows one too): keep the last part
        name = (video.uri or "").replace("\\", "/").rsplit("/", 1)[-1]
        origin = Origin(name or None, video.original_path or video.uri or None)
        result = self._register_received(received, _suffix(name), video, origin)
        self._dispatch([result])
        return result

    def bulk(self, videos: Sequence[NewVideo], call: Call | None = None) -> list[ItemResult]:
        """Each item on its own: a refused or failing item carries its error and code, the
        others go on. Jobs are sent once, after every registration is committed."""
        call = call or Call()
        if len(videos) > MAX_BULK_ITEMS:
            raise InvalidArgumentError(
                f"{len(videos)} videos in one BulkIngest: at most {MAX_BULK_ITEMS}, split it"
            )
        out: list[ItemResult] = []
        try:
            for video in videos:
                call.check()
                try:
                    out.append(ItemResult(video.uri, self._ingest_uri(video, call)))
                except (DeadlineExceededError, CallCancelledError):
                    raise  # the whole call is over; what is registered stays (idempotent)
                except Exception as exc:  # noqa: BLE001 - reported per item
                    code, message = status_of(exc)
                    if code.name == "INTERNAL":
                        logger.exception("bulk ingest of %r failed", video.uri)
                    out.append(ItemResult(video.uri, error=message, error_code=code.name))
        finally:
            self._dispatch([item.result for item in out if item.result is not None])
        return out

    # ------------------------------------------------------------------ checks
    def resolve_path(self, uri: str) -> Path:
        """The real path of a server-side file, or PERMISSION_DENIED / INVALID_ARGUMENT /
        NOT_FOUND. Touches nothing but the file system's metadata."""
        if not self.allowed_roots:
            raise PermissionDeniedError(
                "ingest by server-side path is disabled on this server: set "
                f"$SORA_ALLOWED_ROOTS to the folders (separated by {os.pathsep!r}) whose "
                "files may be ingested, or upload the file (UploadVideo)"
            )
        path = local_path(uri)
        if path is None:
            raise InvalidArgumentError(f"{uri[:200]!r} is a URL, not a server-side path")
        if "\x00" in str(path):
            raise InvalidArgumentError("the path contains a NUL byte")
        if not path.is_absolute():
            raise InvalidArgumentError(f"{uri!r}: a server-side path must be absolute")
        real = Path(os.path.realpath(path))  # '..' and every symlink resolved
        self._check_inside_roots(real, uri)
        if not real.exists():
            raise NotFoundError(f"no such file on the server: {uri}")
        if real.is_dir():
            raise InvalidArgumentError(f"{uri} is a folder: ingest its files (BulkIngest)")
        if not real.is_file():
            raise InvalidArgumentError(f"{uri} is not a regular file")
        return real

    def _check_inside_roots(self, real: Path, uri: str) -> None:
        # The roots are not named: they map the server's disk for any client with a token.
        if not any(real == root or real.is_relative_to(root) for root in self.allowed_roots):
            raise PermissionDeniedError(
                f"{uri} is outside the allowed roots (after resolving '..' and symlinks): "
                "ask the operator where to put it or to add its folder to "
                "$SORA_ALLOWED_ROOTS, or upload it"
            )

    def check_url(self, url: str) -> None:
        """PERMISSION_DENIED unless an allow-list prefix permits `url`."""
        bad = _URL_BAD_CHAR.search(url)
        if bad:
            raise InvalidArgumentError(
                f"the URL has a control character, white space or non-ASCII character "
                f"({bad.group()!r} at {bad.start()}): percent-encode it"
            )
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidArgumentError(
                f"{url[:200]!r}: expected an absolute path or an http(s) URL"
            )
        if not self.allowed_url_prefixes:
            raise PermissionDeniedError(
                "ingest by URL is disabled on this server: set $SORA_ALLOWED_URL_PREFIXES "
                "to the URL prefixes it may fetch, or upload the file (UploadVideo)"
            )
        if parts.username or parts.password:
            raise InvalidArgumentError("URLs with credentials in them are not accepted")
        path = urllib.parse.unquote(parts.path)
        if ".." in path.split("/") or "\\" in path:
            raise PermissionDeniedError(f"{url[:200]}: '..' in a URL path is not accepted")
        try:
            port = parts.port or _default_port(parts.scheme)
        except ValueError:
            raise InvalidArgumentError(f"{url[:200]!r}: bad port") from None
        for prefix in self.allowed_url_prefixes:
            p = urllib.parse.urlsplit(prefix)
            if (
                p.scheme == parts.scheme
                and p.hostname == parts.hostname
                and (p.port or _default_port(p.scheme)) == port
                and _url_path_is_under(posixpath.normpath(path) if path else "/", p.path)
            ):
                return
        raise PermissionDeniedError(  # the prefixes are not named, like the roots
            f"{url[:200]} is not on the server's URL allow-list: ask the operator to add its "
            "prefix to $SORA_ALLOWED_URL_PREFIXES, or upload the file"
        )

    # ------------------------------------------------------------------ internals
    def _ingest_uri(self, video: NewVideo, call: Call) -> IngestResult:
        uri = (video.uri or "").strip()
        if not uri:
            raise InvalidArgumentError("uri is empty: give a server-side path or an http(s) URL")
        if is_url(uri):
            return self._ingest_url(uri, video, call)
        path = self.resolve_path(uri)
        sha, size = self._hash_inside_roots(path, uri, call)
        return self._register(path, sha, size, video, Origin(Path(uri).name, uri))

    def _hash_inside_roots(self, path: Path, uri: str, call: Call) -> tuple[str, int]:
        """Hash the file through one open descriptor, re-checking where that descriptor
        really points (a path component swapped for a symlink after resolve_path)."""
        try:
            f: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed below
        except PermissionError:
            raise PermissionDeniedError(f"the server may not read {uri}") from None
        except FileNotFoundError:
            raise NotFoundError(f"no such file on the server: {uri}") from None
        with f:
            proc_fd = Path(f"/proc/self/fd/{f.fileno()}")
            if proc_fd.exists():
                self._check_inside_roots(Path(os.readlink(proc_fd)), uri)
            h = hashlib.sha256()
            size = 0
            while block := f.read(CHUNK):
                h.update(block)
                size += len(block)
                call.check()
        return h.hexdigest(), size

    def _ingest_url(self, url: str, video: NewVideo, call: Call) -> IngestResult:
        self.check_url(url)
        received = self._download(url, call)
        name = posixpath.basename(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
        return self._register_received(received, _suffix(name), video, Origin(name or None, url))

    def _download(self, url: str, call: Call) -> ReceivedFile:
        service = self

        class CheckedRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001
                service.check_url(newurl)  # a redirect must stay on the allow-list
                return super().redirect_request(req, fp, code, msg, headers, newurl)

        opener = urllib.request.build_opener(CheckedRedirect)
        limit = self.url_timeout_s
        left = call.remaining()
        if left is not None:
            limit = min(limit, left)
        deadline = time.monotonic() + limit
        try:
            response = opener.open(url, timeout=max(self._receive_timeout(deadline), 0.1))
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise NotFoundError(f"{url[:200]} answered 404 Not Found") from None
            reason = f"HTTP {exc.code} {exc.reason}"
            raise UnavailableError(f"fetching {url[:200]} failed: {reason}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            if time.monotonic() >= deadline:
                raise self._late(url, limit) from None
            reason = getattr(exc, "reason", exc)
            raise UnavailableError(f"fetching {url[:200]} failed: {reason}") from None
        with response:
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > self.max_upload_bytes:
                raise _too_big(int(length), self.max_upload_bytes, f"the download of {url[:200]}")
            return receive_file(
                self._body(response, url, deadline, limit),
                self.incoming_dir,
                cap=self.max_upload_bytes,
                call=call,
                what=f"the download of {url[:200]}",
            )

    def _receive_timeout(self, deadline: float) -> float:
        """How long one receive may wait: to the deadline, and no longer than a rate
        window when a minimum rate is set (a silent server is then too slow)."""
        left = deadline - time.monotonic()
        return min(left, self.url_rate_window_s) if self.url_min_rate else left

    def _body(
        self, response: http.client.HTTPResponse, url: str, deadline: float, limit: float
    ) -> Iterator[bytes]:
        """The response body in blocks as they arrive. read1 returns what one receive
        brings, so a server dripping a few bytes at a time cannot hold a read (the old
        read(1 MiB) waited for the whole MiB); each receive is bounded by the deadline.
        DEADLINE_EXCEEDED past the deadline; UNAVAILABLE when a window of
        url_rate_window_s brings under url_min_rate bytes a second. `receive_file` checks
        the call (the client's cancel) after every block."""
        sock = _socket_of(response)
        window_start, window_bytes = time.monotonic(), 0
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise self._late(url, limit)
            if self.url_min_rate and now - window_start >= self.url_rate_window_s:
                if window_bytes < self.url_min_rate * (now - window_start):
                    raise self._too_slow(url, window_bytes, now - window_start)
                window_start, window_bytes = now, 0
            if sock is not None:
                sock.settimeout(max(self._receive_timeout(deadline), 0.01))
            try:
                block = response.read1(CHUNK)
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise self._late(url, limit) from None
                raise self._too_slow(url, window_bytes, time.monotonic() - window_start) from None
            except (OSError, http.client.HTTPException) as exc:
                raise UnavailableError(f"fetching {url[:200]} failed: {exc}") from None
            if not block:
                if response.length:  # http.client's count of promised bytes not yet read
                    raise UnavailableError(
                        f"{url[:200]} closed the connection {response.length} bytes short of "
                        "its Content-Length: retry later"
                    )
                return
            window_bytes += len(block)
            yield block

    def _late(self, url: str, limit: float) -> DeadlineExceededError:
        return DeadlineExceededError(
            f"downloading {url[:200]} took longer than {limit:g} s "
            "($SORA_URL_TIMEOUT or the call's deadline)"
        )

    def _too_slow(self, url: str, received: int, seconds: float) -> UnavailableError:
        return UnavailableError(
            f"{url[:200]} sent {received} bytes in {seconds:.1f} s, under the minimum of "
            f"{self.url_min_rate} bytes/s ($SORA_URL_MIN_RATE): retry later, or upload the file"
        )

    def _register_received(
        self, received: ReceivedFile, suffix: str, video: NewVideo, origin: Origin
    ) -> IngestResult:
        """Register a received file as uploads/<sha256><suffix>, then move it there.

        Registering first: a refusal (bad metadata, the database down) leaves the file
        in .incoming, where it is removed; renaming first left it in uploads/ for good,
        and removing it from there could delete the file of a known video with the same
        bytes. The job is sent only after this returns, so no worker looks for the file
        before it is in place."""
        final = self.uploads_dir / f"{received.sha256}{suffix}"
        try:
            result = self._register(final, received.sha256, received.size, video, origin)
            if result.job_id is None and self._known_uri(result.video_id) != str(final):
                received.path.unlink()  # the bytes are known under another file
            else:
                os.replace(received.path, final)  # same bytes if it exists: harmless
        except BaseException:
            received.path.unlink(missing_ok=True)
            raise
        return result

    def _known_uri(self, video_id: int) -> str:
        with self.store.ReadSession.begin() as s:
            return get_video(s, video_id, include_deleted=True).uri

    def _register(
        self, path: Path, sha: str, size: int, video: NewVideo, origin: Origin
    ) -> IngestResult:
        with self.store.Session.begin() as s:
            row, job, created = register_video(
                s,
                uri=str(path),
                content_sha256=sha,
                size_bytes=size,
                title=video.title,
                default_title=Path(origin.name).stem if origin.name else None,
                collection=video.collection,
                tags=video.tags,
                external_id=video.external_id,
                user_metadata=video.user_metadata,
                original_name=origin.name,
                original_path=origin.path,
            )
            result = IngestResult(row.id, job.id if job else None, created, row.status)
        logger.info(
            "ingest %s -> video %s (job %s, %s)",
            path,
            result.video_id,
            result.job_id,
            "new" if result.created else "known",
        )
        return result

    def _dispatch(self, results: Iterable[IngestResult]) -> None:
        job_ids = [r.job_id for r in results if r.job_id is not None]
        if job_ids:
            self.dispatcher.send(job_ids)
