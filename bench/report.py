#!/usr/bin/python3
"""Prints scripts/bench.sh's table from engine_bench's JSON and the references'
JSON lines. Usage: report.py ENGINE_JSON REFS_JSONL"""

import json
import sys

# config, dtype -> target s/epoch from the speed section of the issue.
TARGETS = {("A", "float64"): 0.15, ("A", "float32"): 0.09, ("C", "float32"): 0.5}


def engine_figures(path):
    """(kind, config, dtype) -> min s/epoch over engine_bench's repetitions."""
    with open(path) as f:
        data = json.load(f)
    out = {}
    for b in data["benchmarks"]:
        if b.get("aggregate_name") != "min" or b.get("error_occurred"):
            continue
        # e.g. "BM_GemmFloor/A/float64/0_min" or "BM_Epoch/A/float32_min"
        parts = b["run_name"].split("/")
        kind, config, dtype = parts[0], parts[1], parts[2]
        if kind == "BM_GemmFloor" and len(parts) > 3 and parts[3] != "0":
            kind = "BM_GemmFloor3"
        out[(kind, config, dtype)] = b["real_time"] / 1000.0  # ms -> s
    return out


def ref_figures(path):
    out, notes = {}, []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            out[(r["impl"], r["config"], r["dtype"])] = r["seconds_per_epoch"]
            if r.get("extrapolated"):
                notes.append(f"{r['impl']} {r['config']} {r['dtype']}: timed "
                             f"{r['examples_timed']} examples, scaled to 60,000")
    return out, notes


def fmt(x):
    return "-" if x is None else f"{x:.3f}"


def ratio(a, b):
    return "-" if a is None or b is None else f"{a / b:.1f}x"


def main():
    engine = engine_figures(sys.argv[1])
    refs, notes = ref_figures(sys.argv[2])
    print("| config | dtype | ours s/epoch | GEMM floor | numpy loop | "
          "numpy batch | torch | loop/ours | torch/ours | target | met |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (config, dtype), target in TARGETS.items():
        ours = engine.get(("BM_Epoch", config, dtype))
        floor = engine.get(("BM_GemmFloor", config, dtype))
        loop = refs.get(("numpy-loop", config, dtype))
        batch = refs.get(("numpy-batch", config, dtype))
        torch = refs.get(("torch", config, dtype))
        met = "-" if ours is None else ("yes" if ours <= target else "NO")
        print(f"| {config} | {dtype} | {fmt(ours)} | {fmt(floor)} | {fmt(loop)} "
              f"| {fmt(batch)} | {fmt(torch)} | {ratio(loop, ours)} "
              f"| {ratio(torch, ours)} | {target} | {met} |")
    floor3 = engine.get(("BM_GemmFloor3", "A", "float64"))
    if floor3 is not None:
        print(f"\nGEMM floor A float64 with all 3 GEMMs per layer "
              f"(incl. the unneeded w1^T delta1): {floor3:.3f} s")
    for n in notes:
        print(f"note: {n}")


if __name__ == "__main__":
    main()
