"""Forward latency and throughput at a published NT shape: `ntengine bench` with this
project's usual grid, results into bench/results/ (forward.json, forward.png).

    python bench/forward.py                                  # NT-v2-50M shape, CPU
    python bench/forward.py --preset v2-500m --batch 1 --tokens 1000 --repeats 5
    python bench/forward.py --device cuda --backends eager,fused,tensorrt --dtypes float32,float16,bfloat16

Any `ntengine bench` option overrides the defaults below (the last one given wins); the
timing, FLOP count, GEMM ceiling and report are `ntengine.bench`'s, nothing of its own.
"""

import sys
from pathlib import Path

from ntengine.cli import main

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULTS = ["--backends", "eager,fused,onnxruntime", "--dtypes", "float32,bfloat16", "--batch", "1,8",
            "--tokens", "128,1000,2048", "--json", str(RESULTS / "forward.json"), "--plot", str(RESULTS / "forward.png")]

if __name__ == "__main__":
    sys.exit(main(["bench", *DEFAULTS, *sys.argv[1:]]))
