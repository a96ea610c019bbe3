"""Risk controls (docs/design.md 12): the kill switch, the rate budget, the back-offs.

Nothing here is on the order path. The hot thread sees all of it through one check it
already makes per candidate (pipeline.pick_and_stage): no signal while any cell of the
`rate_backoff_ns` array lies in the future. Each cell has one writer:

| cell                  | writer        | holds signalling back until                          |
|-----------------------|---------------|------------------------------------------------------|
| k < slots             | executor k    | a 429's reset, a rejection back-off, the spot pool's |
|                       |               | reset when its budget cannot cover a triangle        |
| CELL_MAINT = slots    | maint         | the spot pool's reset (same rule, from its requests) |
| CELL_KILL = slots + 1 | log thread    | forever (KILL_NS) while the kill switch is tripped    |
| slots + 2 (the last)  | unwind thread | its unwind order's answer (unwind.Unwinder)         |

Owns:
- `KillSwitch` (log thread): evaluated on every report record and every `kill_check_ms`,
  from report.SessionSummary (pnl, held) valued by holdings.Valuer at the best bids. On a
  trip it writes CELL_KILL at once, then tells the main thread (`on_trip`), which lets the
  in-flight triangles finish, unwinds if configured, has the KILLED line written and stops
  or stays paused (run.Engine).
- `RateBudget` (any thread that reads a response): per KuCoin pool, the window seen in the
  gw-ratelimit-* headers (docs/kucoin.md 7.1). `blocked_until` is the gate: a triangle
  starts only while the pool's remaining weight covers 3 orders for every slot plus
  `rate_reserve`.
- `RejectBackoff` (executors): repeated rejections of the same code back off
  exponentially, capped; any accepted order clears it.
- `Backoff` (per key: the hot thread's per-symbol snapshot back-off).
- `StopCell`: one thread's cell, the latest deadline over its reasons.

Test: python -m pytest -q tests/test_risk.py (units) and tests/test_killswitch.py (end to end).
"""
from __future__ import annotations

import math
import threading
import time

KILL_NS = (1 << 62)      # CELL_KILL while tripped: later than any eval_ns


def n_cells(nslots: int) -> int:
    """Length of the stop-signalling array (run.allocate): one cell per executor, maint, kill,
    and the unwind thread's (the last: unwind.Unwinder, while an unwind order is out)."""
    return nslots + 3


def cell_maint(nslots: int) -> int:
    return nslots


def cell_kill(nslots: int) -> int:
    return nslots + 1
WINDOW_SLACK_NS = 1_000_000_000   # two reset estimates within this are one window (round trips)

# docs/kucoin.md 7.1 and 5.1: the pool of each REST path this engine calls, and the
# weight of an HF order (place, test, sync), of a lookup by clientOid and of a snapshot.
ORDER_WEIGHT = 1
LOOKUP_WEIGHT = 2
SNAPSHOT_WEIGHT = 2
_PUBLIC_PREFIXES = ("/api/v1/timestamp", "/api/v1/status", "/api/v2/symbols", "/api/v1/market/",
                    "/api/v1/bullet-public")
_MANAGEMENT_PREFIXES = ("/api/v1/accounts",)


def pool_of(path: str) -> str:
    """The rate-limit pool of a REST path (docs/kucoin.md 7.1): public, management or spot."""
    if path.startswith(_PUBLIC_PREFIXES):
        return "public"
    if path.startswith(_MANAGEMENT_PREFIXES):
        return "management"
    return "spot"


def parse_headers(headers) -> tuple[int, int, int] | None:
    """(limit, remaining, reset_ms) from gw-ratelimit-* headers (lower-case keys or a
    case-insensitive mapping), or None when absent or malformed."""
    try:
        lim = headers.get("gw-ratelimit-limit")
        if lim is None:
            return None
        return int(lim), int(headers.get("gw-ratelimit-remaining")), int(headers.get("gw-ratelimit-reset"))
    except (TypeError, ValueError):
        return None


class _Window:
    __slots__ = ("limit", "remaining", "reset_at_ns", "seen")

    def __init__(self, limit, remaining, reset_at_ns):
        self.limit, self.remaining, self.reset_at_ns, self.seen = limit, remaining, reset_at_ns, 1


class RateBudget:
    """Every pool's current window as the responses tell it (docs/kucoin.md 7.1). Shared by
    all threads that read responses; a lock guards the few fields (held for microseconds,
    never on the order path).

    Within a window the remaining weight only goes down, so of two answers the lower
    `remaining` is the later truth, whatever order the threads read them in; an answer whose
    reset lies more than a second beyond the current one opens a new window; a window whose
    reset has passed is unknown (full) until an answer says otherwise."""

    def __init__(self, triangle_need: int = 0):
        self.need = triangle_need          # spot weight a triangle start needs (Engine sets it)
        self.pools: dict[str, _Window] = {}
        self.lock = threading.Lock()
        self.low_since: dict[str, int] = {}   # pool -> first ns it was seen below need (log once)

    def observe(self, pool: str, limit: int, remaining: int, reset_ms: int, now_ns: int) -> None:
        reset_at = now_ns + max(0, reset_ms) * 1_000_000
        with self.lock:
            w = self.pools.get(pool)
            if w is None or now_ns >= w.reset_at_ns or reset_at > w.reset_at_ns + WINDOW_SLACK_NS:
                self.pools[pool] = _Window(limit, remaining, reset_at)
                return
            w.limit = limit
            w.seen += 1
            if remaining < w.remaining:
                w.remaining = remaining
            if reset_at > w.reset_at_ns:        # the later estimate: never open the gate early
                w.reset_at_ns = reset_at

    def observe_headers(self, path: str, headers, now_ns: int | None = None) -> None:
        got = parse_headers(headers)
        if got is not None:
            self.observe(pool_of(path), *got, time.monotonic_ns() if now_ns is None else now_ns)

    def left(self, pool: str, now_ns: int):
        """(remaining, reset_at_ns) of the pool's current window, or None (unknown / reset)."""
        with self.lock:
            w = self.pools.get(pool)
            if w is None or now_ns >= w.reset_at_ns:
                return None
            return w.remaining, w.reset_at_ns

    def blocked_until(self, pool: str, need: int, now_ns: int) -> int:
        """0 when the pool's remaining weight covers `need`, else its reset (ns)."""
        got = self.left(pool, now_ns)
        if got is None or got[0] >= need:
            return 0
        return got[1]

    def triangle_gate(self, now_ns: int) -> int:
        """The spot pool's gate for starting a triangle (0 = open)."""
        return self.blocked_until("spot", self.need, now_ns)

    def wait_s(self, pool: str, weight: int, now_ns: int) -> float:
        """Seconds to wait before a request of `weight` (0.0 when it fits the window)."""
        until = self.blocked_until(pool, weight, now_ns)
        return max(0.0, (until - now_ns) / 1e9) if until else 0.0

    def describe(self, now_ns: int) -> str:
        with self.lock:
            parts = []
            for pool, w in sorted(self.pools.items()):
                if now_ns < w.reset_at_ns:
                    parts.append(f"{pool} {w.remaining}/{w.limit} ({(w.reset_at_ns - now_ns) / 1e9:.0f}s)")
            return " ".join(parts) or "-"


class StopCell:
    """One thread's cell of the stop-signalling array (module table): the latest deadline
    over the reasons this thread knows of. Only its owner calls `hold`."""

    def __init__(self, arr, idx: int):
        self.arr, self.idx = arr, idx
        self.until: dict[str, int] = {}

    def hold(self, reason: str, until_ns: int) -> None:
        self.until[reason] = until_ns
        self.arr[self.idx] = max(self.until.values())

    def value(self) -> int:
        return int(self.arr[self.idx])


class Backoff:
    """Exponential back-off per key: after the n-th failure in a row the key waits
    min(cap, base * 2**(n-1)); a success clears it."""

    def __init__(self, base_ns: int, cap_ns: int):
        self.base_ns, self.cap_ns = base_ns, cap_ns
        self.fails: dict = {}
        self.not_before: dict = {}

    def fail(self, key, now_ns: int) -> int:
        n = self.fails.get(key, 0) + 1
        self.fails[key] = n
        delay = min(self.cap_ns, self.base_ns << min(n - 1, 40)) if self.base_ns else 0
        self.not_before[key] = now_ns + delay
        return delay

    def ok(self, key) -> None:
        self.fails.pop(key, None)
        self.not_before.pop(key, None)

    def allowed(self, key, now_ns: int) -> bool:
        return now_ns >= self.not_before.get(key, 0)


class RejectBackoff:
    """Rejections of the same kind (KuCoin code) in a row back off exponentially, capped
    (docs/design.md 12); any accepted order clears every count. Shared by the executors:
    a lock, held for microseconds after an order's answer."""

    def __init__(self, base_ms: int, cap_ms: int):
        self.b = Backoff(base_ms * 1_000_000, cap_ms * 1_000_000)
        self.lock = threading.Lock()

    def rejected(self, code: str, now_ns: int) -> tuple[int, int]:
        """(n in a row, delay ns) after a rejection with this code."""
        with self.lock:
            delay = self.b.fail(code, now_ns)
            return self.b.fails[code], delay

    def accepted(self) -> None:
        if self.b.fails:
            with self.lock:
                self.b.fails.clear()
                self.b.not_before.clear()


# -- the kill switch -----------------------------------------------------------------------

REASON_LOSS = "session loss"
REASON_DRAWDOWN = "trailing drawdown"
REASON_FAILED = "consecutive failures"
REASON_HELD = "held outside primaries"
FAILING = ("FAILED", "UNKNOWN")      # report.STATUS_FAILED / STATUS_UNKNOWN
SUCCEEDING = ("FILLED", "PARTIAL")   # report.STATUS_FILLED / STATUS_PARTIAL


class KillSwitch:
    """The session's limits (docs/design.md 12), evaluated by the log thread.

    equity = sum over start currencies of pnl valued in `ref` + every coin left outside a
    triangle's start currency valued in `ref` (report.SessionSummary.pnl / .held, at the best
    bids through holdings.Valuer; a coin without a price counts 0, so its cost shows as a
    loss). Limits (0 = off; refused by config.py without i_accept_losses):
      max_loss            -equity >= max_loss
      trailing_drawdown   high - equity >= trailing_drawdown (high: the session's highest
                          equity, starting at 0)
      max_consecutive     FAILED/UNKNOWN triangles in a row (FILLED/PARTIAL reset it;
                          ABORTED neither counts nor resets)
      max_held            value of the coins held outside the primaries >= max_held
    A trip writes CELL_KILL = KILL_NS (no new signal from then on) and calls on_trip(trip).
    `rearm()` (after an operator's resume) clears the cell and measures loss and drawdown
    from the equity of that moment."""

    def __init__(self, risk: dict, ref: str, primaries, cell: StopCell, on_trip=None, log=None):
        self.max_loss = float(risk.get("kill_max_loss", 0))
        self.max_drawdown = float(risk.get("kill_trailing_drawdown", 0))
        self.max_consecutive = int(risk.get("kill_max_consecutive_failed", 0))
        self.max_held = float(risk.get("kill_max_held", 0))
        self.ref = ref
        self.primaries = set(primaries)
        self.cell = cell
        self.on_trip = on_trip
        self.log = log
        self.base = 0.0            # equity the loss is measured from (0, or at a re-arm)
        self.high = 0.0
        self.consecutive = 0
        self.trip: dict | None = None
        self.trips = 0
        self.last: dict = {}

    def figures(self, summary, valuer) -> dict:
        pnl_ref = 0.0
        unpriced = []
        for ccy, amount in summary.pnl.items():
            v = valuer.value(amount, ccy, self.ref) if valuer is not None else (amount if ccy == self.ref else None)
            if v is None or not math.isfinite(v):
                unpriced.append(ccy)
                continue
            pnl_ref += v
        held_ref = outside = 0.0
        for ccy, amount in summary.held.items():
            v = valuer.value(amount, ccy, self.ref) if valuer is not None else (amount if ccy == self.ref else None)
            if v is None or not math.isfinite(v):
                unpriced.append(ccy)
                continue
            held_ref += v
            if ccy not in self.primaries:
                outside += v
        equity = pnl_ref + held_ref
        return {"equity": equity, "pnl": pnl_ref, "held": held_ref, "outside": outside,
                "unpriced": sorted(set(unpriced))}

    def on_record(self, rec) -> None:
        status = getattr(rec, "status", None)
        if status in FAILING:
            self.consecutive += 1
        elif status in SUCCEEDING:
            self.consecutive = 0

    def check(self, summary, valuer) -> dict | None:
        """Evaluate the limits; returns the trip (once) or None."""
        f = self.figures(summary, valuer)
        eq = f["equity"]
        if eq > self.high:
            self.high = eq
        loss = self.base - eq
        drawdown = self.high - eq
        f.update(high=self.high, loss=loss, drawdown=drawdown, consecutive=self.consecutive, base=self.base)
        self.last = f
        if self.trip is not None:
            return None
        why = None
        if self.max_loss and loss >= self.max_loss:
            why = (REASON_LOSS, f"session loss {loss:.6g} {self.ref} >= kill_max_loss {self.max_loss:g}")
        elif self.max_drawdown and drawdown >= self.max_drawdown:
            why = (REASON_DRAWDOWN, f"drawdown {drawdown:.6g} {self.ref} from the session high "
                                    f"{self.high:.6g} >= kill_trailing_drawdown {self.max_drawdown:g}")
        elif self.max_consecutive and self.consecutive >= self.max_consecutive:
            why = (REASON_FAILED, f"{self.consecutive} FAILED/UNKNOWN triangles in a row >= "
                                  f"kill_max_consecutive_failed {self.max_consecutive}")
        elif self.max_held and f["outside"] >= self.max_held:
            why = (REASON_HELD, f"{f['outside']:.6g} {self.ref} held outside the primaries >= "
                                f"kill_max_held {self.max_held:g}")
        if why is None:
            return None
        self.cell.hold("kill", KILL_NS)       # first: no new signal from this instant
        self.trips += 1
        self.trip = dict(f, kind=why[0], reason=why[1], at=time.time())
        if self.on_trip is not None:
            self.on_trip(self.trip)
        return self.trip

    def rearm(self, summary, valuer) -> dict:
        """After a resume: loss and drawdown count from the equity now, the failure count
        from zero; the cell opens. The held limit is a level, not a change: a session still
        holding too much trips again at the next check."""
        f = self.figures(summary, valuer)
        self.base = self.high = f["equity"]
        self.consecutive = 0
        self.trip = None
        self.cell.hold("kill", 0)
        return f


def killed_line(ts_ms: int, trip: dict, ref: str, action: str, summary, inflight: str,
                now: dict | None = None) -> str:
    """The one KILLED line (report.log, stdout): the reason and the figures at the trip, then
    (`after=`) equity and value held outside the primaries once the in-flight triangles
    ended, with the session's pnl and held coins of that moment."""
    import report
    after = (f"after=[equity={now['equity']:.6g} {ref} held_outside_primaries={now['outside']:.6g} {ref}] | "
             if now else "")
    pnl = " ".join(f"{c}={report.fmt_num(v)}" for c, v in sorted(summary.pnl.items())) or "-"
    held = " ".join(f"{c}={report.fmt_num(v)}" for c, v in sorted(summary.held.items())) or "-"
    return (f"{report.fmt_ts_ms(ts_ms)} KILLED | reason={trip['kind']}: {trip['reason']} | "
            f"equity={trip['equity']:.6g} {ref} | high={trip['high']:.6g} | loss={trip['loss']:.6g} | "
            f"drawdown={trip['drawdown']:.6g} | consecutive_failed={trip['consecutive']} | "
            f"held_outside_primaries={trip['outside']:.6g} {ref} | in_flight={inflight} | {after}"
            f"pnl=[{pnl}] | held=[{held}] | action={action}")
