"""A benchmark report as people read it: a table (plain or markdown), a JSON file that
validates against schema.json, a PNG, and two reports side by side."""

from __future__ import annotations

import json
from pathlib import Path

SCHEMA = Path(__file__).with_name("schema.json")
COLUMNS = [("engine", "engine", "{}"), ("shape", "batch x tokens", "{}"), ("p50", "p50 ms", "{:.2f}"),
           ("p90", "p90 ms", "{:.2f}"), ("p99", "p99 ms", "{:.2f}"), ("max", "max ms", "{:.2f}"),
           ("tokens_per_s", "tokens/s", "{:,.0f}"), ("gflops", "GFLOP/s", "{:.1f}"),
           ("ceiling", "of GEMM ceiling", "{:.0%}"), ("vs", "vs eager fp32", "{}"), ("rss", "peak RSS MiB", "{:,.0f}")]


def validate(report: dict) -> None:
    """Raise jsonschema.ValidationError if `report` does not follow schema.json."""
    import jsonschema

    jsonschema.validate(report, json.loads(SCHEMA.read_text()))


def _row(cell: dict) -> dict:
    lat, vs = cell["latency"], cell["vs_baseline"]
    return {"engine": cell["engine"], "shape": f"{cell['batch']} x {cell['tokens']}", "p50": lat["p50_ms"],
            "p90": lat["p90_ms"], "p99": lat["p99_ms"], "max": lat["max_ms"], "tokens_per_s": cell["tokens_per_s"],
            "gflops": cell["gflops"], "ceiling": cell["fraction_of_gemm_ceiling"],
            "vs": f"{vs['median']:.2f}x ({vs['min']:.2f}-{vs['max']:.2f})",
            "rss": cell["peak_memory"]["rss_mib"] or 0.0}


def table(report: dict, markdown: bool = False) -> str:
    """The cells as a fixed-width (or markdown) table, headed by the machine and model."""
    rows = [[fmt.format(_row(c)[key]) for key, _, fmt in COLUMNS] for c in report["cells"]]
    heads = [head for _, head, _ in COLUMNS]
    title = (f"{report['model']['source']} on {report['device']}, {report['threads']} threads, torch "
             f"{report['machine']['torch']}, ntengine {report['machine']['ntengine']}")
    if markdown:
        lines = [f"**{title}**", "", "| " + " | ".join(heads) + " |", "|" + "|".join("---" for _ in heads) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(heads)]
        lines = [title, "  ".join(h.rjust(w) for h, w in zip(heads, widths))]
        lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in rows]
    lines += [f"skipped {s.get('engine') or s.get('cell')}: {s['reason']}" for s in report["skipped"]]
    for m in report.get("mixed", {}).get("speedup_geomean_by_bucket", []):
        speedups = ", ".join(f"{k} {v:.2f}x" for k, v in m.items() if k not in ("tokens", "sequences"))
        lines.append(f"mixed lengths, {m['tokens']} tokens ({m['sequences']} sequences), geomean speed-up: {speedups}")
    return "\n".join(lines)


def plot(report: dict, path) -> Path:
    """Latency (p50) against batch size and throughput against tokens, one line per engine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = report["cells"]
    engines = list(dict.fromkeys(c["engine"] for c in cells))
    tokens = sorted({c["tokens"] for c in cells})
    batches = sorted({c["batch"] for c in cells})
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name in engines:
        mine = [c for c in cells if c["engine"] == name]
        at = [c for c in mine if c["tokens"] == tokens[-1]]
        left.plot([c["batch"] for c in at], [c["latency"]["p50_ms"] for c in at], "o-", label=name)
        at = [c for c in mine if c["batch"] == batches[0]]
        right.plot([c["tokens"] for c in at], [c["tokens_per_s"] for c in at], "o-", label=name)
    left.set(xlabel="batch", ylabel="latency p50 (ms)", title=f"latency at {tokens[-1]} tokens", xscale="log")
    right.set(xlabel="tokens per sequence", ylabel="tokens / s", title=f"throughput at batch {batches[0]}",
              xscale="log")
    for ax, ticks in ((left, batches), (right, tokens)):
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
    left.legend(fontsize=8)
    fig.suptitle(f"{report['model']['source']}\n{report['device']}", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def compare(a: dict, b: dict) -> str:
    """Two reports side by side: for each (engine, batch, tokens) both have, tokens/s of
    each and B / A (two machines, two versions, two settings)."""
    key = lambda c: (c["engine"], c["batch"], c["tokens"])  # noqa: E731
    theirs = {key(c): c for c in b["cells"]}
    lines = [f"A: {a['model']['source']} on {a['device']} (ntengine {a['machine']['ntengine']})",
             f"B: {b['model']['source']} on {b['device']} (ntengine {b['machine']['ntengine']})",
             f"{'engine':>22}  {'batch x tokens':>14}  {'A tokens/s':>11}  {'B tokens/s':>11}  {'B / A':>6}  "
             f"{'A p50 ms':>9}  {'B p50 ms':>9}"]
    shared = [c for c in a["cells"] if key(c) in theirs]
    for c in shared:
        d = theirs[key(c)]
        lines.append(f"{c['engine']:>22}  {c['batch']:>5} x {c['tokens']:<6}  {c['tokens_per_s']:>11,.0f}  "
                     f"{d['tokens_per_s']:>11,.0f}  {d['tokens_per_s'] / c['tokens_per_s']:>5.2f}x  "
                     f"{c['latency']['p50_ms']:>9.2f}  {d['latency']['p50_ms']:>9.2f}")
    if not shared:
        lines.append("(no engine x shape in common)")
    return "\n".join(lines)
