"""The gRPC server: `create_server(address, settings=...) -> (server, port)`, and `main()`.

    create_server   store (opened from settings unless given), dispatcher (Celery), index
                    keeper, services, servicer; standard health (NOT_SERVING until the index
                    is loaded) and reflection; the bearer-token interceptor on every method
                    but health; TLS when a certificate and key are configured; message size
                    limits; at most `max_concurrent_rpcs` calls at once, health checks
                    apart (RESOURCE_EXHAUSTED beyond), with threads to spare for health
                    (limits.py); client streams cut off when idle; partial uploads a killed
                    server left behind swept
    SoraServer      what create_server returns: start() starts the index keeper and gRPC,
                    stop(grace) stops both (health says NOT_SERVING first)

With no token configured the server serves unauthenticated, and so refuses any address
but loopback.
"""

from __future__ import annotations

import gc
import ipaddress
import logging
import signal
import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.api.gen.sora.v1 import sora_pb2_grpc
from services.jobs import Dispatcher, make_celery
from services.search.copy_verdict import CalibrationSource
from services.settings import Settings
from services.store import Store, open_store

from .auth import BearerTokenInterceptor
from .change_signal import ChangeSignal
from .classifier_service import ClassifierService
from .duplicate_service import DuplicateService
from .encoder import Embedder, EncoderHolder
from .index_keeper import IndexKeeper
from .ingest_service import IngestService, JobSender, sweep_partial_files
from .limits import CallLimiter, StreamGuard, check_pool
from .search_service import SearchService
from .servicer import SERVICE, Services, SoraIndexServicer
from .video_service import JobService, VideoService

logger = logging.getLogger(__name__)

SERVICE_NAME = SERVICE.full_name  # "sora.v1.SoraIndex"


def address_host(address: str) -> str:
    """The host part of a gRPC bind address ("host:port", "[v6]:port", "unix:path")."""
    if address.startswith(("unix:", "unix-abstract:")):
        return "unix"
    if address.startswith("["):
        return address[1 : address.index("]")]
    return address.rsplit(":", 1)[0] if ":" in address else address


def is_loopback(address: str) -> bool:
    host = address_host(address)
    if host in ("unix", "localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


class SoraServer:
    """A started-on-demand grpc.Server with the index keeper and health it serves with."""

    def __init__(
        self,
        server: grpc.Server,
        *,
        keeper: IndexKeeper,
        health_servicer: health.HealthServicer,
        services: Services,
        store: Store,
        owns_store: bool,
    ) -> None:
        self.grpc_server = server
        self.keeper = keeper
        self.health = health_servicer
        self.services = services
        self.store = store
        self._owns_store = owns_store

    def start(self) -> None:
        self.keeper.start()
        self.grpc_server.start()

    def stop(self, grace: float | None = None) -> threading.Event:
        """Refuse new calls, let calls in flight finish for `grace` seconds, then stop the
        index keeper (writing its snapshots). The event is set when all is done."""
        self.health.enter_graceful_shutdown()
        stopped = self.grpc_server.stop(grace)
        done = threading.Event()

        def finish() -> None:
            stopped.wait()
            try:
                self.keeper.stop()
            finally:
                if self._owns_store:
                    self.store.dispose()
                done.set()

        threading.Thread(target=finish, name="sora-server-stop", daemon=True).start()
        return done

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self.grpc_server.wait_for_termination(timeout)


def _credentials(settings: Settings) -> grpc.ServerCredentials | None:
    cert, key = settings.tls_cert, settings.tls_key
    if not cert and not key:
        return None
    if not cert or not key:
        raise ValueError("TLS needs both $SORA_TLS_CERT and $SORA_TLS_KEY (PEM files)")
    return grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])


def create_server(
    address: str,
    *,
    settings: Settings,
    store: Store | None = None,
    dispatcher: JobSender | None = None,
    embedder: Embedder | Callable[[], Embedder] | None = None,
    model_version: str | None = None,
) -> tuple[SoraServer, int]:
    """Build (not start) the API server bound to `address` -> (server, bound port).

    store: opened from settings.database_url when None (and closed by stop()).
    dispatcher: sends jobs to the workers; a Celery Dispatcher from settings when None.
    embedder: the encoder for SearchByClip, or a factory for it; loaded lazily from the
        settings' checkpoint when None.
    model_version: the configured model version; None: the embedder's (loaded in the
        index keeper's thread), which decides which version searches serve mid-reindex.
    Raises ValueError for an unauthenticated non-loopback address, half a TLS setup, or a
    concurrency cap the thread pool cannot serve with health checks to spare.
    """
    check_pool(settings.max_workers, settings.max_concurrent_rpcs)
    token = settings.api_token
    if not token:
        if not is_loopback(address):
            raise ValueError(
                f"refusing to serve without authentication on {address}: set "
                "$SORA_API_TOKEN, or bind to a loopback address (127.0.0.1)"
            )
        logger.warning("no $SORA_API_TOKEN: serving UNAUTHENTICATED on loopback only (%s)", address)
    credentials = _credentials(settings)

    owns_store = store is None
    store = store if store is not None else open_store(settings.database_url)
    if dispatcher is None:
        dispatcher = Dispatcher(make_celery(settings), store)
    if embedder is None:

        def embedder_factory() -> Embedder:
            from sora_encoder import load_embedder

            return load_embedder(
                settings.checkpoint,
                variant=settings.variant,
                precision=settings.precision,
                segment_s=settings.segment_s,
            )
    elif callable(embedder) and not hasattr(embedder, "embed"):
        embedder_factory = embedder  # type: ignore[assignment]
    else:
        fixed = embedder

        def embedder_factory() -> Embedder:
            return fixed  # type: ignore[return-value]

    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

    def on_ready() -> None:
        for name in ("", SERVICE_NAME):
            health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

    encoder = EncoderHolder(embedder_factory)  # loaded once, by whichever asks first
    keeper = IndexKeeper(
        store,
        settings.snapshot_dir,
        configured_version=model_version or encoder.version,
        interval_s=settings.index_sync_interval_s,
        recount_idle_s=settings.index_recount_idle_s,
        on_ready=on_ready,
        changes=ChangeSignal(settings.change_signal_path) if settings.api_processes > 1 else None,
        save_snapshots=settings.api_process_index == 0,
    )
    search = SearchService(
        store,
        keeper,
        encoder=encoder,
        clip_dir=settings.uploads_dir / ".queries",
        max_clip_bytes=settings.max_upload_bytes,
        calibration=CalibrationSource(settings.checkpoint),
    )
    services = Services(
        ingest=IngestService.from_settings(store, dispatcher, settings),
        videos=VideoService(store, keeper),
        jobs=JobService(store),
        search=search,
        classifiers=ClassifierService(store, keeper),
        duplicates=DuplicateService(search),
    )

    sweep_partial_files(
        (settings.uploads_dir / ".incoming", settings.uploads_dir / ".queries"),
        older_than_s=settings.upload_time_limit_s,
    )
    # The limiter first, so that every call holding a thread counts (refused ones too).
    # gRPC's own cap only stops floods far past ours: it counts a call as open until its
    # completion is processed, after the handler (and our slot) let go, so at the pool
    # size it refused calls below our cap ("Concurrent RPC limit exceeded!", 8 clients
    # against a cap of 8 and a pool of 10). Past our cap a call takes a thread only to be
    # refused, and the pool keeps HEALTH_THREADS beyond the cap for that and for health.
    interceptors: list[grpc.ServerInterceptor] = [CallLimiter(settings.max_concurrent_rpcs)]
    if token:
        interceptors.append(BearerTokenInterceptor(token))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix="sora-rpc"),
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            # one port, several processes only when asked for: otherwise a second server
            # on a taken port fails to bind rather than silently taking half its calls
            ("grpc.so_reuseport", 1 if settings.api_processes > 1 else 0),
        ],
        maximum_concurrent_rpcs=2 * settings.max_workers,
    )
    guard = StreamGuard(settings.stream_idle_s, max_s=settings.upload_time_limit_s)
    sora_pb2_grpc.add_SoraIndexServicer_to_server(SoraIndexServicer(services, guard), server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    try:
        if credentials is not None:
            port = server.add_secure_port(address, credentials)
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as exc:
        if owns_store:
            store.dispose()
        raise RuntimeError(f"cannot bind {address}: {exc}") from exc
    if not port:
        if owns_store:
            store.dispose()
        raise RuntimeError(f"cannot bind {address}")
    logger.info(
        "sora API on %s (port %d, %s, %s)",
        address,
        port,
        "TLS" if credentials else "plaintext",
        "token auth" if token else "no auth",
    )
    return (
        SoraServer(
            server,
            keeper=keeper,
            health_servicer=health_servicer,
            services=services,
            store=store,
            owns_store=owns_store,
        ),
        port,
    )


def freeze_after_load(server: SoraServer) -> threading.Thread:
    """Once the index is loaded: a full collection, then gc.freeze(), in a thread of its
    own (returned). For a process that serves one SoraServer until it exits (main, `sora
    serve`), not create_server: the freeze is process-wide.

    Why: the catalogue and the indexes' metadata are some hundred thousand long-lived
    objects at 10^6 vectors, and under load Python's full collections walked them about
    once a second per API process: ~4 % of the CPU at 64 clients (gc.callbacks, 10^6
    vectors, 2 processes), in pauses of tens of ms. Frozen objects are never walked; they
    are still freed when their count drops, and the collection before the freeze leaves
    no garbage behind in them. Objects made later (syncs, calls) are collected as usual.
    """

    def freeze() -> None:
        server.keeper.wait_ready(None)
        gc.collect()
        gc.freeze()
        logger.info("index loaded: %d objects exempt from the cyclic GC", gc.get_freeze_count())

    thread = threading.Thread(target=freeze, name="sora-gc-freeze", daemon=True)
    thread.start()
    return thread


def main(argv: Any = None) -> int:
    """Serve on $SORA_API_ADDRESS until SIGTERM or Ctrl-C (calls in flight get 5 s).
    `--exit-with-parent PID`: die with process PID (`sora serve --api-processes` starts
    its API processes so)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m services.api.server")
    ap.add_argument("--exit-with-parent", type=int, metavar="PID")
    args = ap.parse_args(argv)
    if args.exit_with_parent is not None:
        from services.parent_watch import exit_with_parent

        exit_with_parent(args.exit_with_parent)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.from_env()
    settings.ensure_home()
    server, port = create_server(settings.api_address, settings=settings)
    server.start()
    freeze_after_load(server)
    logger.info(
        "serving on %s (port %d)%s", settings.api_address, port,
        f", API process {settings.api_process_index} of {settings.api_processes}"
        if settings.api_processes > 1 else "",
    )  # fmt: skip
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    logger.info("stopping")
    server.stop(grace=5).wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
