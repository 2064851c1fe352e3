"""What a benchmark ran on: `ntengine.info()` plus the CPU's family/model, core counts and
each GPU's name, memory, compute capability and driver."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path


def cpu_model() -> str:
    """The model name with family/model numbers: VMs often say only "AMD EPYC", and family
    25 model 1 (Zen 3) vs 17 (Zen 4) is what decides the kernels' speed."""
    try:
        fields = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if ":" in line:
                key, value = line.split(":", 1)
                fields.setdefault(key.strip(), value.strip())
        if "model name" in fields:
            return f"{fields['model name']} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')})"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _driver() -> str | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                         text=True)
    return out.stdout.splitlines()[0].strip() if out.returncode == 0 and out.stdout.strip() else None


def machine() -> dict:
    import torch

    from ntengine.info import info

    facts = info()
    facts["cpu"] = cpu_model()
    facts["cores"] = os.cpu_count()
    facts["cores_usable"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    facts["gpus"] = [{"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1),
                      "capability": f"{p.major}.{p.minor}", "sm_count": p.multi_processor_count}
                     for p in map(torch.cuda.get_device_properties, range(torch.cuda.device_count()))]
    facts["cuda_runtime"] = torch.version.cuda
    facts["driver"] = _driver() if facts["gpus"] else None
    return facts
