#!/usr/bin/python3
"""Similarity benchmark: connectome's Go knn against a NumPy reference, in the same run.

For each case (N nodes, dimension D, random or real-like vectors) it writes a float32 matrix,
then runs, each in a process of its own so that peak memory (ru_maxrss) is that process's:
  - the Go search (the compiled knn test binary in driver mode, -knn.in),
  - the NumPy reference: normalise once, blocked matmul (query block x all), argpartition
    for the k closest and k farthest, exact sort of those k; in float64 (the same exactness
    as the Go code) and in float32.
It checks that the neighbour lists agree and prints a markdown table with time ratios.

Usage (from the repository root, Debian python with python3-numpy):
  /usr/bin/python3 scripts/bench/similarity_numpy.py [--sizes 289,5000,50000] [--dims 512,1024]
  /usr/bin/python3 scripts/bench/similarity_numpy.py numpy FILE.npy OUT.npy --dtype float64
OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE are removed from the NumPy runs' environment so that
OpenBLAS picks its own kernel for this CPU (reported in the output).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

K = 5


def numpy_knn(x, k, dtype, block=512):
    """Exact top-k closest and farthest by cosine distance, ties by index (as the Go code)."""
    n = x.shape[0]
    xn = x.astype(dtype)
    xn /= np.linalg.norm(xn, axis=1, keepdims=True)
    xt = np.ascontiguousarray(xn.T)
    kk = min(k, n - 1)
    closest = np.empty((n, kk), dtype=np.int64)
    farthest = np.empty((n, kk), dtype=np.int64)
    buf = np.empty((block, n), dtype=dtype)
    for s in range(0, n, block):
        e = min(s + block, n)
        sim = np.matmul(xn[s:e], xt, out=buf[: e - s])
        rows = np.arange(e - s)
        for sel, out, sign in ((closest, closest, -1.0), (farthest, farthest, 1.0)):
            # closest: largest similarity; farthest: smallest. Self is pushed out of reach.
            sim[rows, s + rows] = np.inf if sign > 0 else -np.inf
            idx = np.argpartition(sign * sim, kk - 1, axis=1)[:, :kk] if kk < n - 1 else np.argsort(sign * sim, axis=1)[:, : n - 1]
            d = 1.0 - np.take_along_axis(sim, idx, axis=1).astype(np.float64)
            # exact order of the k: by distance (ascending or descending), then index
            order = np.lexsort((idx, d if sign < 0 else -d), axis=1)
            out[s:e] = np.take_along_axis(idx, order, axis=1)
            sim[rows, s + rows] = 1.0
    return closest, farthest


def cmd_numpy(args):
    x = np.load(args.input)
    t = time.perf_counter()
    c, f = numpy_knn(x, args.k, np.dtype(args.dtype))
    sec = time.perf_counter() - t
    np.save(args.output, np.concatenate([c, f], axis=1).astype(np.float32))
    info = {}
    try:
        import threadpoolctl

        info = threadpoolctl.threadpool_info()
        info = [{"arch": i.get("architecture"), "threads": i.get("num_threads"), "version": i.get("version")} for i in info]
    except ImportError:
        pass
    print("KNN_RESULT " + json.dumps({"seconds": sec, "blas": info, "peak_mib": peak_mib()}))


def peak_mib():
    """This process's peak resident memory (VmHWM). Not the parent's wait4 ru_maxrss: Linux
    keeps the forking parent's peak in the child's across exec."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return -1.0


def real_like(rng, n, d, shared):
    """Vectors shaped like the published embeddings: each is a published embedding of that
    dimension plus noise of half its per-dimension spread (clusters, a shared mean, all the
    cosine distances small), or a synthetic stand-in when the reference data is absent."""
    name = {512: "CTFM", 1024: "PASTA"}.get(d)
    path = os.path.join(shared, "reference", "nlst-sybil-embeddings", f"{name}.npy") if name else ""
    if path and os.path.exists(path):
        ref = np.load(path).astype(np.float64)
    else:
        centres = rng.standard_normal((64, d)) * 0.3 + 1.0
        ref = centres[rng.integers(0, 64, 734)] + rng.standard_normal((734, d)) * 0.1
    std = ref.std(axis=0)
    base = ref[rng.integers(0, ref.shape[0], n)]
    return (base + rng.standard_normal((n, d)) * (0.5 * std)).astype(np.float32)


def run_measured(cmd, env=None):
    """Runs cmd; returns its parsed KNN_RESULT line and the peak RSS (MiB) it reported."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    out = p.stdout.read()
    status = p.wait()
    if status != 0:
        sys.exit(f"{' '.join(cmd)} failed ({status}):\n{out}")
    line = [l for l in out.splitlines() if l.startswith("KNN_RESULT ")]
    if not line:
        sys.exit(f"no result from {' '.join(cmd)}:\n{out}")
    r = json.loads(line[-1][len("KNN_RESULT "):])
    return r, r["peak_mib"]


def agree(a, b):
    """Share of identical rows (same ids, same order) of two (N, 2k) index arrays."""
    return float(np.mean(np.all(a == b, axis=1)))


def cmd_bench(args):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    shared = os.path.join(root, "..", "shared")
    tmp = tempfile.mkdtemp(prefix="simbench-")
    binary = os.path.join(tmp, "knn.test")
    subprocess.run(["go", "test", "-c", "-o", binary, "./internal/knn"], cwd=root, check=True)
    np_env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    rng = np.random.default_rng(20260101)
    dtypes = args.numpy_dtypes.split(",")
    print(f"| N | D | vectors | Go s | Go MiB | " + " | ".join(f"NumPy {t} s | NumPy {t} MiB | NumPy {t} / Go" for t in dtypes) + " | lists equal |")
    print("|---|---|---|---|---|" + "---|---|---|" * len(dtypes) + "---|")
    blas = None
    for n in [int(s) for s in args.sizes.split(",")]:
        for d in [int(s) for s in args.dims.split(",")]:
            for kind in args.kinds.split(","):
                x = rng.standard_normal((n, d)).astype(np.float32) if kind == "random" else real_like(rng, n, d, shared)
                inp = os.path.join(tmp, "x.npy")
                np.save(inp, x)
                del x
                go_out, np_out = os.path.join(tmp, "go.npy"), os.path.join(tmp, "np.npy")
                # the machine is shared: interleave the runs and keep each side's best time
                reps = args.repeat or (3 if n <= 5000 else 1)
                go_s, go_mib, np_s, np_mib, equal = [], 0.0, {t: [] for t in dtypes}, {t: 0.0 for t in dtypes}, {}
                for _ in range(reps):
                    go_res, mib = run_measured([binary, "-test.run", "^TestDriver$", "-knn.in", inp, "-knn.out", go_out, "-knn.k", str(K)])
                    go_s.append(go_res["seconds"])
                    go_mib = max(go_mib, mib)
                    go_ids = np.load(go_out)
                    for t in dtypes:
                        r, mib = run_measured([sys.executable, os.path.abspath(__file__), "numpy", inp, np_out, "--dtype", t, "--k", str(K)], env=np_env)
                        blas = r.get("blas")
                        np_s[t].append(r["seconds"])
                        np_mib[t] = max(np_mib[t], mib)
                        equal[t] = f"{t}: {agree(go_ids, np.load(np_out)) * 100:.2f}%"
                cells = [f"{min(np_s[t]):.3f} | {np_mib[t]:.0f} | {min(np_s[t]) / min(go_s):.2f}×" for t in dtypes]
                go_res["seconds"] = min(go_s)
                line = f"| {n} | {d} | {kind} | {go_res['seconds']:.3f} | {go_mib:.0f} | " + " | ".join(cells) + " | " + ", ".join(equal.values()) + " |"
                print(line, flush=True)
    print(f"\nGo kernel AVX-512: {go_res.get('avx512')}; NumPy BLAS: {blas}; numpy {np.__version__}")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd")
    b = sub.add_parser("bench")
    for p in (ap, b):
        p.add_argument("--sizes", default="289,5000,50000")
        p.add_argument("--dims", default="512,1024")
        p.add_argument("--kinds", default="random,real")
        p.add_argument("--numpy-dtypes", default="float64,float32")
        p.add_argument("--repeat", type=int, default=0, help="runs per case, best time kept (default 3 up to N=5000, else 1)")
    n = sub.add_parser("numpy")
    n.add_argument("input")
    n.add_argument("output")
    n.add_argument("--dtype", default="float64")
    n.add_argument("--k", type=int, default=K)
    args = ap.parse_args()
    if args.cmd == "numpy":
        cmd_numpy(args)
    else:
        cmd_bench(args)


if __name__ == "__main__":
    main()
