"""Similarity benchmark against FAISS: `connectome run --only similarity` beside exact FAISS
(IndexFlatIP on L2-normalised float32 vectors) in the same run, time and peak memory of each
whole process, and how the neighbour lists compare.

For each case (N nodes, dimension D) it writes the vectors once (.npy for FAISS, an Arrow IPC
embeddings file for connectome), then runs, interleaved and each in a process of its own:
  - connectome: `connectome run --only similarity --embeddings FILE --run-dir DIR`,
  - FAISS from PyPI (faiss-cpu, this script's virtual environment),
  - FAISS from Debian (python3-faiss under /usr/bin/python3),
  - optionally a second connectome binary (--baseline, e.g. main's) whose edges.arrow must be
    identical to the first one's: same ids, order and float64 distances, bit for bit.
Time is each process's wall clock, start to exit (interpreter start, imports, reading the
input and writing the result included); memory is its peak RSS, both from GNU time (its
child's ru_maxrss: GNU time is small, so the fork carries almost nothing of it into the
measured process, which a Python parent's fork would).

FAISS is asked as its users do for an exact top-k by cosine: normalise in place
(faiss.normalize_L2), IndexFlatIP, search(x, k+1) for the closest, then the same index
searched with −x (negated in place) for the farthest; the query itself is dropped from its
list. It computes in float32; connectome in float64 from the float32 inputs. The lists are
compared node by node; for a node whose list differs, the float64 distances (from the
original float32 vectors) of FAISS's matches are compared rank by rank with connectome's:
the lists "differ only on ties within float32 rounding" when every rank's two distances are
within the float32 error bound of a cosine of unit vectors (see float32_bound).

Usage (scripts/bench/similarity-faiss.sh makes the environment and calls this):
  similarity_faiss.py bench --connectome BIN [--baseline BIN] [--cases 50000x512,100000x768]
  similarity_faiss.py faiss IN.npy OUT.npz [--k 5]     (any Python with faiss and numpy)
  similarity_faiss.py gen N D PREFIX                   (writes PREFIX.npy and PREFIX.arrow)
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

K = 5
MODEL = "bench"


def faiss_knn(x, k):
    """FAISS exact top-k closest and farthest by cosine distance, self excluded."""
    import faiss

    n, d = x.shape
    kk = min(k, n - 1)
    faiss.normalize_L2(x)
    index = faiss.IndexFlatIP(d)
    index.add(x)
    sim_c, idx_c = index.search(x, kk + 1)
    np.negative(x, out=x)
    sim_f, idx_f = index.search(x, kk + 1)
    idx_c, sim_c = drop_self(idx_c, sim_c, kk)
    idx_f, sim_f = drop_self(idx_f, sim_f, kk)
    # closest: d = 1 − cos; farthest: the search saw −cos
    return idx_c, 1.0 - sim_c.astype(np.float64), idx_f, 1.0 + sim_f.astype(np.float64)


def drop_self(idx, val, k):
    """Removes each row's own index (or, where the row does not hold it, its last entry)."""
    keep = idx != np.arange(idx.shape[0])[:, None]
    keep[keep.all(axis=1), -1] = False
    return idx[keep].reshape(-1, k), val[keep].reshape(-1, k)


def peak_mib():
    """This process's peak resident memory (VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return -1.0


def cmd_faiss(args):
    import faiss

    x = np.load(args.input)
    t = time.perf_counter()
    ic, dc, if_, df = faiss_knn(x, args.k)
    sec = time.perf_counter() - t
    np.savez(args.output, closest=ic, closest_d=dc, farthest=if_, farthest_d=df)
    info = {"seconds": sec, "peak_mib": peak_mib(), "faiss": faiss.__version__, "numpy": np.__version__,
            "threads": faiss.omp_get_max_threads(), "python": sys.version.split()[0]}
    print("KNN_RESULT " + json.dumps(info))


def write_embeddings(path, x):
    """Writes x as an embeddings table (the schema of connectome's embed stage), one batch."""
    import pyarrow as pa

    n, d = x.shape
    ids = [f"n{i:07d}" for i in range(n)]
    pats = [f"p{i // 2:07d}" for i in range(n)]
    emb = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1), type=pa.float32()), d)
    table = pa.table({"lesion_id": pa.array(ids), "patient_id": pa.array(pats),
                      "model": pa.array([MODEL] * n), "embedding": emb})
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        w.write_batch(table.combine_chunks().to_batches(max_chunksize=n)[0])


def make_vectors(n, d, kind, seed):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from similarity_numpy import real_like

    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.standard_normal((n, d)).astype(np.float32)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return real_like(rng, n, d, os.path.join(root, "..", "shared"))


def cmd_gen(args):
    x = make_vectors(args.n, args.d, args.kind, args.seed)
    np.save(args.prefix + ".npy", x)
    write_embeddings(args.prefix + ".arrow", x)


def timed(cmd):
    """Runs cmd under GNU time; returns (wall seconds, peak MiB, output, load average before)."""
    load = os.getloadavg()[0]
    p = subprocess.run(["/usr/bin/time", "-f", "GNUTIME %e %M %U %S"] + cmd, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    m = re.findall(r"^GNUTIME ([0-9.]+) ([0-9]+) ([0-9.]+) ([0-9.]+)$", p.stdout, re.M)
    if p.returncode != 0 or not m:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-4000:]}")
    wall, kib, user, sys_ = m[-1]
    return float(wall), int(kib) / 1024.0, p.stdout, load, float(user) + float(sys_)


def read_edges(path, n):
    """connectome's edges.arrow as (closest ids, closest d, farthest ids, farthest d), (N, k)."""
    import pyarrow.ipc as ipc

    t = ipc.open_file(path).read_all()
    out = []
    for kind in ("closest", "farthest"):
        sel = t.filter(t["kind"].to_numpy(zero_copy_only=False) == kind)
        q = np.array([int(s[1:]) for s in sel["query_lesion_id"].to_pylist()])
        m = np.array([int(s[1:]) for s in sel["match_lesion_id"].to_pylist()])
        r = sel["rank"].to_numpy()
        d = sel["cosine_distance"].to_numpy()
        k = int(r.max())
        ids, dist = np.full((n, k), -1, dtype=np.int64), np.full((n, k), np.nan)
        ids[q, r - 1], dist[q, r - 1] = m, d
        out += [ids, dist]
    return out


def edges_identical(a, b):
    """Whether two edges.arrow files hold the same rows in the same order (metadata aside)."""
    import pyarrow.ipc as ipc

    ta, tb = ipc.open_file(a).read_all(), ipc.open_file(b).read_all()
    return ta.schema.remove_metadata().equals(tb.schema.remove_metadata()) and ta.equals(tb)


def float32_bound(d):
    """A priori bound on |FAISS's float32 cosine − the exact one| for vectors of dimension d:
    normalising each vector (a sum of d squares, a square root, a division) and the dot
    product of the unit vectors each err by at most about γ_d = d·u (u = 2⁻²⁴, the float32
    unit roundoff), so |error| ≤ (2d + 4)·u per cosine. Two candidates can swap places in
    FAISS's order when their exact distances are within twice that."""
    return 2 * (2 * d + 4) * 2.0 ** -24


def exact_distances(x, rows, idx):
    """float64 cosine distances of rows[i] to idx[i, :] from the original float32 vectors,
    as connectome computes them (dot · (1/‖a‖ · 1/‖b‖))."""
    xr = x[rows].astype(np.float64)
    xm = x[idx].astype(np.float64)  # (r, k, d)
    dots = np.einsum("rd,rkd->rk", xr, xm)
    inv_r = 1 / np.sqrt(np.einsum("rd,rd->r", xr, xr))
    inv_m = 1 / np.sqrt(np.einsum("rkd,rkd->rk", xm, xm))
    return 1 - dots * (inv_r[:, None] * inv_m)


def compare(x, ours, theirs):
    """Per list kind: nodes whose lists differ, and the largest rank-wise gap between the exact
    distances of the two lists over those nodes, and the largest float32 error of FAISS's own
    distances over every listed match."""
    res = {}
    for name, o_ids, o_d, t_ids, t_d in (("closest", ours[0], ours[1], theirs["closest"], theirs["closest_d"]),
                                         ("farthest", ours[2], ours[3], theirs["farthest"], theirs["farthest_d"])):
        diff = np.nonzero(np.any(o_ids != t_ids, axis=1))[0]
        gap = 0.0
        if len(diff):
            exact = exact_distances(x, diff, t_ids[diff])
            gap = float(np.max(np.abs(exact - o_d[diff])))
        # FAISS's float32 error, measured where both name the same match at the same rank
        same = o_ids == t_ids
        err = float(np.max(np.abs(t_d[same] - o_d[same]))) if same.any() else 0.0
        res[name] = {"differ": int(len(diff)), "gap": gap, "f32err": err}
    return res


def cmd_bench(args):
    tmp = tempfile.mkdtemp(prefix="simbench-faiss-", dir=args.workdir)
    here = os.path.abspath(__file__)
    rows = []
    notes = []
    for case in args.cases.split(","):
        n, d = (int(v) for v in case.split("x"))
        prefix = os.path.join(tmp, f"x{n}x{d}")
        x = make_vectors(n, d, args.kind, args.seed)
        np.save(prefix + ".npy", x)
        write_embeddings(prefix + ".arrow", x)
        runs = {"connectome": []}
        for ref in args.refs.split(","):
            runs[{"pypi": "faiss-cpu (PyPI)", "debian": "python3-faiss (Debian)"}[ref]] = []
        if args.baseline:
            runs["connectome (baseline)"] = []
        edges = {}
        for rep in range(args.repeat):
            for name in runs:
                if name.startswith("connectome"):
                    binary = args.baseline if "baseline" in name else args.connectome
                    rd = os.path.join(tmp, "run-baseline" if "baseline" in name else "run")
                    shutil.rmtree(rd, ignore_errors=True)
                    r = timed([binary, "run", "--only", "similarity", "--embeddings", prefix + ".arrow",
                               "--run-dir", rd])
                    edges[name] = os.path.join(rd, "similarity", "edges.arrow")
                else:
                    py = sys.executable if "PyPI" in name else "/usr/bin/python3"
                    out = f"{prefix}-{'pypi' if 'PyPI' in name else 'debian'}.npz"
                    r = timed([py, here, "faiss", prefix + ".npy", out, "--k", str(K)])
                    info = json.loads(re.findall(r"^KNN_RESULT (.*)$", r[2], re.M)[-1])
                    edges[name] = out
                    notes.append(f"N = {n}, D = {d}, {name}: faiss {info['faiss']}, numpy {info['numpy']}, python {info['python']}, "
                                 f"{info['threads']} threads; search {info['seconds']:.1f} s in the process")
                runs[name].append(r)
                print(f"  {case} {name} run {rep + 1}: {r[0]:.2f} s, {r[1]:.0f} MiB, CPU {r[4]:.1f} s (load {r[3]:.2f})",
                      file=sys.stderr, flush=True)
        best = {k: min(v, key=lambda r: r[0]) for k, v in runs.items()}
        peak = {k: max(r[1] for r in v) for k, v in runs.items()}
        ours = read_edges(edges["connectome"], n)
        same = edges_identical(edges["connectome"], edges["connectome (baseline)"]) if args.baseline else None
        cmp_ = {k: compare(x, ours, np.load(edges[k])) for k in runs if "faiss" in k}
        rows.append((n, d, best, peak, same, cmp_))
        del x
        for p in (prefix + ".npy", prefix + ".arrow"):
            os.remove(p)
    print_report(rows, args, sorted(set(notes)))
    shutil.rmtree(tmp, ignore_errors=True)


def print_report(rows, args, notes):
    print(f"\nk = {K}, vectors: {args.kind}, best of {args.repeat} interleaved runs (time), largest peak RSS; "
          f"load average (1 min) at the start of each kept run in brackets; CPU = user + sys of the kept runs\n")
    print("| N | D | connectome s [load] | connectome MiB | reference | ref s [load] | ref MiB | time ours/ref | peak ours/ref | CPU s ours/ref |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n, d, best, peak, _, _ in rows:
        o = best["connectome"]
        for k in best:
            if k == "connectome":
                continue
            r = best[k]
            print(f"| {n} | {d} | {o[0]:.2f} [{o[3]:.1f}] | {peak['connectome']:.0f} | {k} | {r[0]:.2f} [{r[3]:.1f}] | "
                  f"{peak[k]:.0f} | **{o[0] / r[0]:.2f}** | **{peak['connectome'] / peak[k]:.2f}** | "
                  f"{o[4]:.1f} / {r[4]:.1f} = {o[4] / r[4]:.2f} |")
    print("\nLists (connectome float64 against FAISS float32; bound = float32_bound(D)):\n")
    print("| N | D | reference | kind | nodes whose list differs | largest gap of exact distances, rank by rank | bound | FAISS's largest float32 error |")
    print("|---|---|---|---|---|---|---|---|")
    for n, d, _, _, _, cmp_ in rows:
        for ref, c in cmp_.items():
            for kind, v in c.items():
                ok = "within" if v["gap"] <= float32_bound(d) else "**OUTSIDE**"
                print(f"| {n} | {d} | {ref} | {kind} | {v['differ']} of {n} ({100 * v['differ'] / n:.2f} %) | "
                      f"{v['gap']:.2e} ({ok}) | {float32_bound(d):.1e} | {v['f32err']:.1e} |")
    for n, d, _, _, same, _ in rows:
        if same is not None:
            print(f"\nN = {n}, D = {d}: edges.arrow of connectome and of the baseline binary "
                  f"{'IDENTICAL (same ids, order and float64 distances)' if same else 'DIFFER'}")
    print()
    for note in notes:
        print(note)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--connectome", required=True, help="the connectome binary")
    b.add_argument("--baseline", help="a second connectome binary whose edges must be identical")
    b.add_argument("--cases", default="50000x512,100000x768", help="NxD,...")
    b.add_argument("--kind", default="real", choices=["real", "random"])
    b.add_argument("--refs", default="pypi,debian", help="FAISS builds to run: pypi, debian or both")
    b.add_argument("--repeat", type=int, default=1)
    b.add_argument("--seed", type=int, default=20260101)
    b.add_argument("--workdir", default=None, help="where the inputs and runs go (default: $TMPDIR)")
    f = sub.add_parser("faiss")
    f.add_argument("input")
    f.add_argument("output")
    f.add_argument("--k", type=int, default=K)
    g = sub.add_parser("gen")
    g.add_argument("n", type=int)
    g.add_argument("d", type=int)
    g.add_argument("prefix")
    g.add_argument("--kind", default="real", choices=["real", "random"])
    g.add_argument("--seed", type=int, default=20260101)
    args = ap.parse_args()
    {"bench": cmd_bench, "faiss": cmd_faiss, "gen": cmd_gen}[args.cmd](args)


if __name__ == "__main__":
    main()
