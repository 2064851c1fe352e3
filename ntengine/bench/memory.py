"""Peak memory of one call: the process's resident set (Linux resets its high-water mark
through /proc/self/clear_refs; elsewhere the lifetime peak is all there is, and says so)
and, on CUDA, torch's peak allocation."""

from __future__ import annotations

import resource
import sys
from pathlib import Path


def _vm_hwm_mib() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class PeakMemory:
    def __init__(self, device):
        self.device = device

    def measure(self, fn) -> dict:
        import torch

        try:
            Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS to the current RSS
            scope = "this call"
        except OSError:
            scope = "process lifetime"
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        fn()
        out = {"rss_mib": _vm_hwm_mib(), "rss_scope": scope}
        if out["rss_mib"] is None:  # not Linux: ru_maxrss is KiB on Linux/BSD, bytes on macOS
            scale = 2**20 if sys.platform == "darwin" else 2**10
            out.update(rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / scale / 1024,
                       rss_scope="process lifetime")
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            out["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        return out
