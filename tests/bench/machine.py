"""What the benchmarks say about the machine they ran on, in every report."""

from __future__ import annotations

import os
import platform
from typing import Any


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def machine(load_before: float) -> dict[str, Any]:
    """CPUs, Python, platform and the 1-minute load average before and now."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_1m_before": load_before,
        "loadavg_1m_after": load_average(),
        "note": "load average includes everything else running on the machine",
    }
