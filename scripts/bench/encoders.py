#!/usr/bin/env python3
"""Per-encoder ONNX Runtime figures for docs/BENCHMARKS.md, from an export directory
(models.yaml + the .onnx files, e.g. weights-random/ from `make models-random`).

CPU mode (default): per model, in a fresh process each: session creation time, latency per
patch at batch 1 and at the models file's batch_size (median of --runs after one warm-up),
peak RSS of the process; the export time and file size from export-report.json; and the CPU
time to embed N lesions (default 734, NLST-Sybil) with all models.

CUDA mode (--cuda, scripts/gpu-check.sh): per model, patches/s on the CUDA provider at batch 1,
8 and 32 with cudnn_conv_algo_search EXHAUSTIVE and HEURISTIC, the CUDA-vs-CPU agreement
(worst cosine and max relative difference on random inputs), and the peak GPU memory of the
process (nvidia-smi, sampled). Needs onnxruntime-gpu instead of onnxruntime.

Usage: python3 scripts/bench/encoders.py --models-dir weights-random [--threads 2] [--runs 5]
       python3 scripts/bench/encoders.py --models-dir weights-random --cuda [--budget-s 400]
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time

import numpy as np


def shape_of(spec, n):
    ax = {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}
    roi = spec["preprocess"]["roi"]
    return (n, 1) + tuple(roi[ax[c]] for c in spec["preprocess"]["axcodes"])


def random_input(spec, n, seed=0):
    lo, hi = spec["preprocess"].get("clamp", [0, 1])
    return (np.random.default_rng(seed).random(shape_of(spec, n), dtype=np.float32) * (hi - lo) + lo).astype(np.float32)


def session(path, threads, provider, algo=None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    if provider == "cuda":
        if hasattr(ort, "preload_dlls"):
            ort.preload_dlls()  # the CUDA and cuDNN libraries of the nvidia-* wheels
        providers = [("CUDAExecutionProvider", {"cudnn_conv_algo_search": algo, "device_id": 0}), "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    s = ort.InferenceSession(path, so, providers=providers)
    if provider == "cuda" and s.get_providers()[0] != "CUDAExecutionProvider":
        raise SystemExit("CUDA execution provider did not load (providers %s)" % s.get_providers())
    return s


def timed(sess, x, runs):
    sess.run(["embedding"], {"input": x})  # warm-up (and cuDNN algorithm search)
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(["embedding"], {"input": x})
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def cpu_child(args, spec):
    """One model in this (fresh) process: prints a JSON line."""
    path = os.path.join(args.models_dir, spec["onnx"])
    t = time.perf_counter()
    s = session(path, args.threads, "cpu")
    create = time.perf_counter() - t
    b = spec["batch_size"]
    l1 = timed(s, random_input(spec, 1), args.runs)
    lb = timed(s, random_input(spec, b), max(1, args.runs // 2))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"name": spec["name"], "create_s": create, "b1_s": l1, "batch": b, "bb_s": lb, "rss": rss}))


class GPUMem:
    """Peak memory.used of GPU 0 while alive (nvidia-smi every 50 ms)."""

    def __init__(self):
        self.peak, self.stop = 0, False
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def loop(self):
        while not self.stop:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                                 capture_output=True, text=True).stdout.strip()
            if out:
                self.peak = max(self.peak, int(out.splitlines()[0]))
            time.sleep(0.05)

    def done(self):
        self.stop = True
        self.t.join()
        return self.peak


def cuda_child(args, spec):
    path = os.path.join(args.models_dir, spec["onnx"])
    base = int(subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                              capture_output=True, text=True).stdout.split()[0])
    mem = GPUMem()
    row = {"name": spec["name"]}
    cpu = session(path, 0, "cpu")
    x = random_input(spec, 2, 7)
    want = cpu.run(["embedding"], {"input": x})[0]
    for algo in ("EXHAUSTIVE", "HEURISTIC"):
        s = session(path, 0, "cuda", algo)
        got = s.run(["embedding"], {"input": x})[0]
        cos = (want * got).sum(1) / (np.linalg.norm(want, axis=1) * np.linalg.norm(got, axis=1))
        rel = np.abs(want - got).max(1) / np.abs(want).max(1)
        row[algo] = {"cos": float(cos.min()), "rel": float(rel.max())}
        for b in (1, 8, 32):
            sec = timed(s, random_input(spec, b), args.runs)
            row[algo][str(b)] = b / sec
        del s
    row["peak_mib"] = mem.done() - base
    print(json.dumps(row))


def run_children(args, specs, mode):
    rows = []
    for spec in specs:
        cmd = [sys.executable, os.path.abspath(__file__), "--models-dir", args.models_dir, "--threads", str(args.threads),
               "--runs", str(args.runs), "--child", spec["name"]] + (["--cuda"] if mode == "cuda" else [])
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print("%s: failed:\n%s" % (spec["name"], out.stderr[-3000:]), file=sys.stderr)
            rows.append({"name": spec["name"], "error": out.stderr.strip().splitlines()[-1:]})
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print("encoders: %s done" % spec["name"], file=sys.stderr, flush=True)
    return rows


def cpu_table(args, specs, rows):
    rep = {}
    rp = os.path.join(args.models_dir, "export-report.json")
    if os.path.exists(rp):
        rep = {m["name"]: m for m in json.load(open(rp))["models"]}
    print("| model | export s | file MB | session s | s/patch, batch 1 | s/patch, batch b (b) | peak RSS MiB | %d lesions, s |" % args.lesions)
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    total = 0.0
    for r in rows:
        if "error" in r:
            print("| %s | failed: %s |" % (r["name"], r["error"]))
            continue
        per = min(r["b1_s"], r["bb_s"] / r["batch"])
        total += per * args.lesions
        e = rep.get(r["name"], {})
        print("| %s | %s | %s | %.1f | %.3f | %.3f (%d) | %.0f | %.0f |" % (
            r["name"], e.get("export_seconds", "-"), ("%.0f" % (e["bytes"] / 1e6)) if e else "-", r["create_s"],
            r["b1_s"], r["bb_s"] / r["batch"], r["batch"], r["rss"] / 2**20, per * args.lesions))
    print()
    print("All %d models, %d lesions, %d CPU threads: %.0f s = %.1f min (the faster of batch 1 and the file's batch per model)." % (
        len(rows), args.lesions, args.threads, total, total / 60))


def cuda_table(rows):
    print("| model | EXHAUSTIVE b1 | b8 | b32 | HEURISTIC b1 | b8 | b32 | CUDA vs CPU cosine | max rel diff | peak GPU MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print("| %s | failed: %s |" % (r["name"], r["error"]))
            continue
        e, h = r["EXHAUSTIVE"], r["HEURISTIC"]
        print("| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.7f | %.1e | %d |" % (
            r["name"], e["1"], e["8"], e["32"], h["1"], h["8"], h["32"], min(e["cos"], h["cos"]), max(e["rel"], h["rel"]), r["peak_mib"]))
    print("\n(patches/s; cuDNN algorithm search per session; agreement on 2 random inputs)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models-dir", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--lesions", type=int, default=734)
    ap.add_argument("--cuda", action="store_true")
    ap.add_argument("--models", default="")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    import yaml

    specs = yaml.safe_load(open(os.path.join(args.models_dir, "models.yaml")))["models"]
    if args.models:
        specs = [s for s in specs if s["name"] in args.models.split(",")]
    if args.child:
        spec = next(s for s in specs if s["name"] == args.child)
        return cuda_child(args, spec) if args.cuda else cpu_child(args, spec)
    rows = run_children(args, specs, "cuda" if args.cuda else "cpu")
    if args.cuda:
        cuda_table(rows)
    else:
        cpu_table(args, specs, rows)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
