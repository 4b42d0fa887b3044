"""What a submission may send and how long it may take: the limits the trusted side reads its replies under,
and the alarm that stops the submission's own code when an exercise's share of the time runs out."""

from __future__ import annotations

import signal
import time

MESSAGE_LIMIT = 64 * 2**20  # bytes: the largest reply the trusted side reads from a submission
TEXT_LIMIT = 500  # characters of any message text a submission sends (its exceptions, its notes)
OUTPUT_KEPT = 20_000  # characters of a submission's printed output kept for its feedback
DEPTH_LIMIT = 8  # nesting of a returned value (tuples of lists of ...)
ITEMS_LIMIT = 10_000  # items in a returned container
NODES_LIMIT = 200_000  # values in one reply, each shared reference counted again (a list sent 10,000 times)
TENSOR_BYTES_LIMIT = 256 * 2**20  # bytes of one reply's tensors once materialised (a stride-0 view counts in full)


class TimeUp(BaseException):
    """An exercise's share of the time limit ran out (not an Exception, so that neither the checks' nor the
    student's `except Exception` swallows it). Its argument: the share in seconds."""


class alarm:
    """Context manager: raise `error` (TimeUp) at the absolute time `at` (None: no alarm)."""

    def __init__(self, at: float | None, error: type[BaseException] = TimeUp):
        self.at, self.error = at, error

    def __enter__(self):
        if self.at is not None and hasattr(signal, "setitimer"):
            self.seconds = max(0.01, self.at - time.time())
            signal.signal(signal.SIGALRM, self._raise)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc):
        if self.at is not None and hasattr(signal, "setitimer"):
            signal.setitimer(signal.ITIMER_REAL, 0)

    def _raise(self, signum, frame):
        raise self.error(self.seconds)
