"""Run one ffmpeg process safely: stderr always drained, a time budget, always reaped.

    Popen(ffmpeg ...) --stdout--> caller (read_into / read_all)
                      --stderr--> drain thread --> head + tail kept for error messages
    watchdog thread: charges the time the caller waits; over budget -> kill, timed_out = True
    close(): kill if still running, wait (no zombie), join threads, close pipes

Why this and not `subprocess.run(timeout=...)`: decoding streams frames to the caller while
ffmpeg runs, so the time-out and the stderr drain must live beside a pipe the caller reads.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

log = logging.getLogger(__name__)

# Keep the beginning of stderr (the probe header lives there) and the end (the error that
# stopped ffmpeg). A hostile file can make ffmpeg log without end; memory stays bounded.
_STDERR_HEAD_BYTES = 1 << 20
_STDERR_TAIL_BYTES = 64 << 10
# A 1 MiB pipe holds several clips, so ffmpeg and the reader wake each other less often.
_PIPE_BYTES = 1 << 20
_WATCHDOG_TICK_S = 0.1


class _StderrDrain(threading.Thread):
    """Reads a pipe to EOF so the writer never blocks; keeps a bounded head and tail."""

    def __init__(self, pipe: object) -> None:
        super().__init__(name="ffmpeg-stderr", daemon=True)
        self._pipe = pipe
        self._head = bytearray()
        self._tail: collections.deque[bytes] = collections.deque()
        self._tail_bytes = 0
        self.dropped = 0
        self._lock = threading.Lock()

    def run(self) -> None:
        read = self._pipe.read  # type: ignore[attr-defined]
        while True:
            try:
                chunk = read(65536)
            except (OSError, ValueError):  # pipe closed under us by close()
                return
            if not chunk:
                return
            with self._lock:
                room = _STDERR_HEAD_BYTES - len(self._head)
                if room > 0:
                    self._head += chunk[:room]
                    chunk = chunk[room:]
                if chunk:
                    self._tail.append(chunk)
                    self._tail_bytes += len(chunk)
                    while self._tail_bytes - len(self._tail[0]) >= _STDERR_TAIL_BYTES:
                        self.dropped += len(self._tail[0])
                        self._tail_bytes -= len(self._tail.popleft())

    def text(self) -> str:
        with self._lock:
            head = bytes(self._head)
            tail = b"".join(self._tail)
            dropped = self.dropped
        gap = f"\n[... {dropped} bytes of ffmpeg output dropped ...]\n" if dropped else ""
        return head.decode("utf-8", "replace") + gap + tail.decode("utf-8", "replace")


class FfmpegProcess:
    """One running ffmpeg with a time budget; use as a context manager so it is reaped."""

    def __init__(self, args: Sequence[str], *, budget_s: float, what: str) -> None:
        self.args = list(args)
        self.what = what
        self.budget_s = budget_s
        self.timed_out = False
        self._used_s = 0.0
        self._clock_since: float | None = time.monotonic()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._started = time.monotonic()
        log.debug("ffmpeg %s: %s", what, " ".join(self.args))
        self.proc = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,  # ffmpeg reads keys from stdin unless told otherwise
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
        )
        try:
            _grow_pipe(self.proc.stdout)
            self._stderr = _StderrDrain(self.proc.stderr)
            self._stderr.start()
            self._watchdog = threading.Thread(
                target=self._watch, name="ffmpeg-watchdog", daemon=True
            )
            self._watchdog.start()
        except BaseException:  # e.g. no thread could start: do not leave ffmpeg behind
            self.proc.kill()
            self.proc.wait()
            raise

    # -- time budget ---------------------------------------------------------------------
    def pause_clock(self) -> None:
        """Stop charging time: the caller is busy elsewhere (e.g. a generator is suspended)."""
        with self._lock:
            if self._clock_since is not None:
                self._used_s += time.monotonic() - self._clock_since
                self._clock_since = None

    def resume_clock(self) -> None:
        with self._lock:
            if self._clock_since is None:
                self._clock_since = time.monotonic()

    def _charged_s(self) -> float:
        with self._lock:
            running = 0.0 if self._clock_since is None else time.monotonic() - self._clock_since
            return self._used_s + running

    def _watch(self) -> None:
        while True:
            left = self.budget_s - self._charged_s()
            if left <= 0:
                # Still running: a time-out. (One that exited and awaits reaping is not.)
                if self.proc.poll() is None:
                    self.timed_out = True
                    log.warning(
                        "ffmpeg %s: over its %.1f s budget, killing", self.what, self.budget_s
                    )
                    with contextlib.suppress(OSError):
                        self.proc.kill()
                return
            if self._done.wait(min(left, _WATCHDOG_TICK_S)):
                return

    # -- I/O -----------------------------------------------------------------------------
    def read_into(self, view: memoryview) -> int:
        """Fill `view` from stdout; returns the bytes read (less than its size only at EOF)."""
        stdout = self.proc.stdout
        assert stdout is not None, "stdout is a pipe"
        got = 0
        size = len(view)
        while got < size:
            n = stdout.readinto(view[got:])  # type: ignore[attr-defined]
            if not n:
                break
            got += n
        return got

    def read_all(self, max_bytes: int) -> bytes:
        """Read stdout to EOF, keeping at most `max_bytes` (the rest is read and dropped)."""
        stdout = self.proc.stdout
        assert stdout is not None, "stdout is a pipe"
        out = bytearray()
        while chunk := stdout.read(65536):
            if len(out) < max_bytes:
                out += chunk[: max_bytes - len(out)]
        return bytes(out)

    def stderr_text(self) -> str:
        return self._stderr.text()

    def stderr_tail(self, max_lines: int = 8) -> str:
        """The last non-empty stderr lines, joined with '; ' for an error message."""
        lines = [ln.strip() for ln in self._stderr.text().splitlines() if ln.strip()]
        return "; ".join(lines[-max_lines:])

    # -- ending ----------------------------------------------------------------------------
    def wait(self) -> int:
        """Wait for ffmpeg to exit (the watchdog still bounds it); returns the exit status."""
        self.resume_clock()
        rc = self.proc.wait()
        # EOF follows exit (ffmpeg has no children holding the pipe); bounded all the same.
        self._stderr.join(timeout=5.0)
        return rc

    def close(self) -> None:
        """Kill if still running, reap, stop the threads, close the pipes. Idempotent."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.kill()
        self.proc.wait()
        self._done.set()
        self._watchdog.join()
        self._stderr.join(timeout=5.0)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        log.debug(
            "ffmpeg %s: exit %s after %.3f s", self.what, self.proc.returncode, self.elapsed_s
        )

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self._started

    def __enter__(self) -> FfmpegProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True)
class CompletedFfmpeg:
    returncode: int
    stdout: bytes
    stderr: str
    timed_out: bool
    elapsed_s: float


def run_ffmpeg(
    args: Sequence[str], *, budget_s: float, what: str, max_stdout: int = 1 << 20
) -> CompletedFfmpeg:
    """Run ffmpeg to completion under a time budget; never raises for a non-zero exit."""
    with FfmpegProcess(args, budget_s=budget_s, what=what) as p:
        out = p.read_all(max_stdout)
        rc = p.wait()
    return CompletedFfmpeg(rc, out, p.stderr_text(), p.timed_out, p.elapsed_s)


def _grow_pipe(pipe: object) -> None:
    """Enlarge a pipe's kernel buffer where Linux allows it; a no-op elsewhere."""
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)  # type: ignore[attr-defined]
    except (ImportError, AttributeError, OSError, ValueError):
        pass  # non-Linux, or /proc/sys/fs/pipe-max-size is lower: the default pipe works
