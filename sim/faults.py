"""sim/faults.py: the simulator's fault switches, set by POST /sim/control or CLI flags.

Owns: what goes wrong next (dropped/delayed WS frames, REST 5xx/429, rejected orders,
late fill events, private-event ordering) and the counters that tests assert on.
Thread: the simulator's single asyncio thread (read by sim/ws.py and sim/rest.py).
Run/test: tests/test_sim.py drives every switch through `control(...)`.

Faults use their own RNG (seeded from --seed) so that switching them on does not change
the market's random stream.
"""
from __future__ import annotations

import random


class Faults:
    def __init__(self, seed: int):
        self.rng = random.Random(seed ^ 0x5EED)
        self.reset()

    def reset(self) -> None:
        self.drop_prob = 0.0             # drop each public data frame with this probability
        self.drop_count = 0              # ... or drop the next N public data frames
        self.drop_scope = "public"       # public | private | all
        self.drop_kind = ""              # private only: drop only orderChange events of this
                                         # type (match, filled, canceled, ...) or "balance"
        self.delay_frames_ms = 0         # every outgoing data frame waits this long
        self.rest_5xx = 0                # next N KuCoin REST requests fail with 5xx
        self.rest_5xx_status = 500
        self.rest_429 = 0                # next N KuCoin REST requests answer 429000
        self.reject = 0                  # next N order placements are rejected
        self.reject_after = 0            # ... after letting this many placements through
        self.reject_code = "200004"
        self.reject_msg = "Balance insufficient!"
        self.reject_match = ""           # only clientOids ending with this ("" = any)
        self.late_fills_ms = 0           # delay match/done/settlement events by N ms
        # next N order placements execute, then the answer is lost: a gateway 5xx HTML page,
        # a reset connection, or no answer for hang_ms (docs/kucoin.md 1.6)
        self.after_execute = 0
        self.after_execute_status = 502   # 500 | 502 | 503 | 504 | "reset" | "hang"
        self.after_execute_hang_ms = 30000
        self.after_execute_match = ""    # only clientOids ending with this ("" = any)
        self.order_visibility_delay_ms = 0  # lookups answer "order not exist." for this long
        self.events_before_response = True
        self.counters = {"frames_dropped": 0, "rest_5xx_sent": 0, "rest_429_sent": 0,
                         "orders_rejected": 0, "backlog_dropped": 0, "answers_lost_after_execute": 0,
                         "lookups_hidden": 0}

    def drop_frame(self, private: bool, kind: str = "") -> bool:
        """Whether to drop this data frame (decided once per message, for all subscribers).
        kind: a private frame's orderChange type, or "balance"."""
        if self.drop_scope != "all" and (self.drop_scope == "private") != private:
            return False
        if self.drop_kind and kind != self.drop_kind:
            return False
        if self.drop_count > 0:
            self.drop_count -= 1
            self.counters["frames_dropped"] += 1
            return True
        if self.drop_prob > 0 and self.rng.random() < self.drop_prob:
            self.counters["frames_dropped"] += 1
            return True
        return False

    def set_drop(self, v) -> None:
        """drop_frames: a float in (0,1) is a probability, an int >= 1 a count, or a dict
        {"probability": p} / {"count": n} with optional "scope"."""
        if isinstance(v, dict):
            self.drop_scope = v.get("scope", self.drop_scope)
            self.drop_prob = float(v.get("probability", 0.0))
            self.drop_count = int(v.get("count", 0))
            self.drop_kind = str(v.get("kind", ""))
        elif isinstance(v, float) and v < 1.0:
            self.drop_prob, self.drop_count = v, 0
        else:
            self.drop_prob, self.drop_count = 0.0, int(v)
        if self.drop_scope not in ("public", "private", "all"):
            raise ValueError("drop_frames scope must be public, private or all")

    def take_rest_fault(self):
        """(http_status, code, msg) for this request, or None."""
        if self.rest_5xx > 0:
            self.rest_5xx -= 1
            self.counters["rest_5xx_sent"] += 1
            st = self.rest_5xx_status
            return st, "500000", "Internal Server Error" if st == 500 else "Service Unavailable"
        if self.rest_429 > 0:
            self.rest_429 -= 1
            self.counters["rest_429_sent"] += 1
            return 429, "429000", "Too Many Requests"
        return None

    def set_after_execute(self, v) -> None:
        """rest_5xx_after_execute: n, or {"count": n, "status": 500|502|503|504|"reset"|"hang",
        "hang_ms": ms}. The order is placed and matched as usual (its private events are
        pushed), and then its REST answer is replaced."""
        if isinstance(v, dict):
            n, st = int(v["count"]), v.get("status", 502)
            self.after_execute_hang_ms = int(v.get("hang_ms", self.after_execute_hang_ms))
            self.after_execute_match = str(v.get("client_oid_suffix", ""))
        else:
            n, st = int(v), 502
            self.after_execute_match = ""
        if st not in (500, 502, 503, 504, "reset", "hang"):
            raise ValueError("rest_5xx_after_execute status must be 500, 502, 503, 504, reset or hang")
        self.after_execute, self.after_execute_status = n, st

    def take_after_execute(self, client_oid: str = ""):
        """The answer fault for an order that was just executed, or None."""
        if self.after_execute > 0 and client_oid.endswith(self.after_execute_match):
            self.after_execute -= 1
            self.counters["answers_lost_after_execute"] += 1
            return self.after_execute_status
        return None

    def hidden(self, created_ms: int, now_ms: int) -> bool:
        """An order lookup inside the visibility lag answers "order not exist." (KuCoin's HF
        lookup can lag the placement, docs/kucoin.md 5.6)."""
        if self.order_visibility_delay_ms and now_ms - created_ms < self.order_visibility_delay_ms:
            self.counters["lookups_hidden"] += 1
            return True
        return False

    def take_reject(self, client_oid: str = ""):
        if self.reject > 0 and client_oid.endswith(self.reject_match) and self.reject_after > 0:
            self.reject_after -= 1
            return None
        if self.reject > 0 and client_oid.endswith(self.reject_match):
            self.reject -= 1
            self.counters["orders_rejected"] += 1
            return self.reject_code, self.reject_msg
        return None

    def state(self) -> dict:
        return {"drop_frames": {"probability": self.drop_prob, "count": self.drop_count, "scope": self.drop_scope,
                                "kind": self.drop_kind},
                "delay_frames_ms": self.delay_frames_ms, "rest_5xx": self.rest_5xx,
                "rest_5xx_status": self.rest_5xx_status, "rest_429": self.rest_429,
                "reject_orders": self.reject, "late_fills_ms": self.late_fills_ms,
                "events_before_response": self.events_before_response,
                "rest_5xx_after_execute": {"count": self.after_execute, "status": self.after_execute_status},
                "order_visibility_delay_ms": self.order_visibility_delay_ms, "counters": dict(self.counters)}
