"""A child process that dies with its parent, however the parent ends (SIGKILL, the OOM
killer): what `sora serve` asks of the worker and the API processes it starts, so that a
restarted `sora serve` never finds orphans of the last one on its data folder or port.

On Linux the kernel sends SIGKILL when the parent dies (prctl PR_SET_PDEATHSIG, set in the
child); elsewhere a thread polls the parent's pid.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_PARENT_POLL_S = 1.0


def exit_with_parent(parent_pid: int) -> None:
    """Have this process killed (SIGKILL) when its parent `parent_pid` exits."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")
    else:
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    # The parent may have died before the line above: then nobody is left to signal us.
    if os.getppid() != parent_pid:
        logger.error("the parent process %d is gone; exiting", parent_pid)
        os.kill(os.getpid(), signal.SIGKILL)


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        threading.Event().wait(_PARENT_POLL_S)
    os.kill(os.getpid(), signal.SIGKILL)
