"""What machine a benchmark ran on: printed with every result and stored in its JSON."""
from __future__ import annotations

import os
import platform
from pathlib import Path

# cpuidle halt-polling (Linux guests, cpuidle-haltpoll): how long an idle vCPU polls before it
# halts. 0 = halt at once, so waking it needs an IPI through the hypervisor (measured here:
# a loopback send() to a process on a halted vCPU costs 44 us p50 against 18 us when it polls).
HALT_POLL = Path("/sys/module/haltpoll/parameters/guest_halt_poll_ns")


def _read(path) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def machine() -> dict:
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import numba
        import numpy
        versions = {"numba": numba.__version__, "numpy": numpy.__version__}
    except ImportError:
        versions = {}
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(),
            "cpu": model or platform.processor() or platform.machine(),
            "python": platform.python_version(), **versions,
            "jit": os.environ.get("NUMBA_DISABLE_JIT", "0") != "1",
            "loadavg": list(os.getloadavg()), "platform": platform.platform(),
            "cpuidle": _read("/sys/devices/system/cpu/cpuidle/current_driver"),
            "guest_halt_poll_ns": _read(HALT_POLL)}
