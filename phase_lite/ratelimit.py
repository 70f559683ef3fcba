"""Phase's request rate limit: ``RATE_LIMIT_DEFAULT`` requests per period, per account.

The same algorithm as Django REST framework's ``SimpleRateThrottle``, which Phase uses: a sliding
window holding the times of the account's accepted requests. A request is refused when the
window already holds N of them; refused requests are not counted. The wait announced is the
time until the oldest accepted request leaves the window, rounded up to whole seconds. One
counter per account (``user_<id>``, ``sa_<id>``; ``anon_<ip>`` for a caller without one),
shared by every endpoint. In memory, so per process (per node behind a load balancer), unless
``PHASE_LITE_RATE_LIMIT_SCOPE=cluster`` asks for one window per account across every node on
PostgreSQL (``SharedRateLimiter``: one statement per request, on the database's clock).
"""

import math
import threading
import time
from collections import deque

from .errors import Throttled

_SWEEP_EVERY = 1024  # requests between sweeps of idle counters


def account_key(principal=None, ip=None) -> str:
    """The counter a request uses: its account, else its client address."""
    if principal is not None:
        return f"{'user' if principal.is_user else 'sa'}_{principal.account_id}"
    return f"anon_{ip}"


class RateLimiter:
    """Allow at most ``rate[0]`` requests per ``rate[1]`` seconds per key; None allows all."""

    def __init__(self, rate: tuple[int, int] | None, clock=time.monotonic):
        self.rate = rate
        self._clock = clock
        self._history: dict[str, deque] = {}
        self._lock = threading.Lock()
        self._since_sweep = 0

    def check(self, key: str) -> None:
        """Count one request for ``key`` or raise Throttled with the wait in whole seconds."""
        if self.rate is None:
            return
        limit, duration = self.rate
        with self._lock:
            moment = self._clock()
            history = self._history.setdefault(key, deque())
            while history and history[0] <= moment - duration:
                history.popleft()
            if len(history) >= limit:
                wait = duration - (moment - history[0])
                available = limit - len(history) + 1
                if available > 0:  # DRF divides the wait among requests still available
                    wait /= available
                raise Throttled(max(1, math.ceil(wait)))
            history.append(moment)
            self._since_sweep += 1
            if self._since_sweep >= _SWEEP_EVERY:
                self._sweep(moment - duration)

    def _sweep(self, horizon):
        self._since_sweep = 0
        for key in [k for k, h in self._history.items() if not h or h[-1] <= horizon]:
            del self._history[key]


class SharedRateLimiter:
    """``RateLimiter``'s windows kept in PostgreSQL: exact across every node. Its keys start
    with ``api:`` (the console's sign-in windows share the table)."""

    def __init__(self, db, rate: tuple[int, int]):
        self.rate = rate
        self._db = db
        self._lock = threading.Lock()
        self._since_sweep = 0

    def check(self, key: str) -> None:
        limit, duration = self.rate
        refused, history, moment = self._db.count_request("api:" + key, limit, duration)
        with self._lock:
            self._since_sweep += 1
            sweep = self._since_sweep >= _SWEEP_EVERY
            if sweep:
                self._since_sweep = 0
        if sweep:
            self._db.forget_idle_requests(duration, "api:")
        if refused:
            wait = duration - (moment - history[0])
            available = limit - len(history) + 1
            if available > 0:
                wait /= available
            raise Throttled(max(1, math.ceil(wait)))


def make_limiter(config, db):
    """The limiter ``config`` asks for: per node in memory, or shared through the database."""
    if config.rate_limit is not None and config.rate_limit_scope == "cluster":
        return SharedRateLimiter(db, config.rate_limit)
    return RateLimiter(config.rate_limit)
