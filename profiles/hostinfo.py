"""What machine a benchmark ran on: printed with every result and stored in its JSON."""
from __future__ import annotations

import os
import platform


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
            "loadavg": list(os.getloadavg()), "platform": platform.platform()}
