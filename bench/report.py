#!/usr/bin/python3
"""Prints scripts/bench.sh's tables from engine_bench's JSON and the
references' JSON lines. Usage: report.py ENGINE_JSON REFS_JSONL"""

import json
import sys

# (config, dtype) -> target s/epoch from the speed section.
TARGETS = {("A", "float64"): 0.15, ("A", "float32"): 0.09, ("C", "float32"): 0.5}


def engine_figures(path):
    """(kind, config, dtype) -> (wall, CPU) s/epoch, min over repetitions.

    kind: "epoch1" (one Train call per epoch), "epoch4" (4-epoch calls),
    "floor" (GEMMs backprop needs), "floor3" (3 GEMMs per layer)."""
    with open(path) as f:
        data = json.load(f)
    out = {}
    for b in data["benchmarks"]:
        if b.get("aggregate_name") != "min" or b.get("error_occurred"):
            continue
        # e.g. "BM_Epoch/A/float64/4/iterations:1/repeats:3/real_time"
        parts = b["run_name"].split("/")
        name, config, dtype, arg = parts[0], parts[1], parts[2], parts[3]
        if name not in ("BM_Epoch", "BM_GemmFloor"):
            continue  # BM_Feedforward: printed by engine_bench itself
        epochs = 1
        if name == "BM_Epoch":
            kind = "epoch" + arg
            epochs = int(arg)
        else:
            kind = "floor" if arg == "0" else "floor3"
        scale = 1000.0 * epochs  # ms per iteration -> s per epoch
        out[(kind, config, dtype)] = (b["real_time"] / scale,
                                      b["cpu_time"] / scale)
    return out


def ref_figures(path):
    out, notes = {}, []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            out[(r["impl"], r["config"], r["dtype"])] = (
                r["seconds_per_epoch"], r.get("cpu_seconds_per_epoch"))
            if r.get("extrapolated"):
                notes.append(f"{r['impl']} {r['config']} {r['dtype']}: timed "
                             f"{r['examples_timed']} examples, scaled to 60,000")
    return out, notes


def fmt(x):
    return "-" if x is None else f"{x:.3f}"


def ratio(a, b):
    return "-" if a is None or b is None else f"{a / b:.1f}x"


def table(engine, refs, column, title):
    """column 0: wall-clock seconds, 1: CPU seconds."""
    def get(d, key):
        v = d.get(key)
        return None if v is None else v[column]
    print(f"\n{title}\n")
    print("| config | dtype | ours (1-epoch call) | ours (4-epoch call) "
          "| GEMM floor | numpy loop | numpy batch | torch | loop/ours "
          "| torch/ours | target | met |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (config, dtype), target in TARGETS.items():
        ours = get(engine, ("epoch1", config, dtype))
        ours4 = get(engine, ("epoch4", config, dtype))
        floor = get(engine, ("floor", config, dtype))
        loop = get(refs, ("numpy-loop", config, dtype))
        batch = get(refs, ("numpy-batch", config, dtype))
        torch = get(refs, ("torch", config, dtype))
        met = "-" if ours is None else ("yes" if ours <= target else "NO")
        print(f"| {config} | {dtype} | {fmt(ours)} | {fmt(ours4)} "
              f"| {fmt(floor)} | {fmt(loop)} | {fmt(batch)} | {fmt(torch)} "
              f"| {ratio(loop, ours)} | {ratio(torch, ours)} | {target} "
              f"| {met} |")


def main():
    engine = engine_figures(sys.argv[1])
    refs, notes = ref_figures(sys.argv[2])
    table(engine, refs, 0, "Wall-clock seconds per epoch")
    table(engine, refs, 1, "CPU seconds per epoch (same runs; every "
          "implementation is single-threaded here, so on a busy machine this "
          "is closer to the unshared wall-clock figure)")
    floor3 = engine.get(("floor3", "A", "float64"))
    if floor3 is not None:
        print(f"\nGEMM floor A float64 with all 3 GEMMs per layer "
              f"(incl. the unneeded w1^T delta1): {floor3[0]:.3f} s wall, "
              f"{floor3[1]:.3f} s CPU")
    print("ratios: reference time / our 1-epoch-call time (> 1: we are faster)")
    for n in notes:
        print(f"note: {n}")


if __name__ == "__main__":
    main()
