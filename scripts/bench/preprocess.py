#!/usr/bin/python3
"""Preprocess benchmark: one lesion, all 9 model configurations, from a 512x512x300 CT series on
disk, four ways in the same run, each in a process of its own (so peak memory is its own):

  go-crop     connectome's crop-only path (header pass, then only the needed slices and pixels)
  go-whole    the same Go code resampling the whole volume per distinct grid, then cropping
  ref-local   ../shared/tools/patchref.py as shipped (reads the whole series; local resampling)
  ref-whole   patchref's own functions over the whole grid (chunked to bound memory), then crop

It prints a markdown table with bytes read, voxels sampled, time and peak memory per lesion,
and the ratios against go-crop. Time per core is CPU time (user+system), which is what a
shared machine can measure honestly; wall time is shown too.

Usage (repository root; Debian python3 with python3-numpy and python3-pydicom):
  /usr/bin/python3 scripts/bench/preprocess.py [--dir /tmp/connectome-bench-ct512] [--lesions 20]
      [--ref-lesions 2]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
PATCHREF = os.path.abspath(os.path.join(ROOT, '..', 'shared', 'tools'))


def go_driver(binary, mode, series_dir, lesions):
    env = dict(os.environ, PREPROCESS_BENCH=mode, PREPROCESS_BENCH_DIR=series_dir,
               PREPROCESS_BENCH_LESIONS=str(lesions))
    out = subprocess.run([binary, '-test.run', '^TestBenchDriver$', '-test.v', '-test.timeout', '60m'],
                         env=env, cwd=os.path.join(ROOT, 'stages', 'preprocess'),
                         capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith('BENCH '):
            return json.loads(line[6:])
    sys.exit(f'go driver {mode} failed:\n{out.stdout}\n{out.stderr}')


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def ref_mode(mode, series_dir, seeds):
    """Runs in a child process; prints one JSON line."""
    sys.path.insert(0, PATCHREF)
    import numpy as np
    import patchref as P
    names = sorted(P.MODELS)
    series_bytes = sum(os.path.getsize(os.path.join(series_dir, f)) for f in os.listdir(series_dir))
    t0, c0 = time.time(), cpu()
    vol, spacing, origin, direction = P.read_series(series_dir)
    read_s, read_cpu = time.time() - t0, cpu() - c0
    res = {'mode': mode, 'lesions': len(seeds), 'files_per_lesion': len(os.listdir(series_dir)),
           'bytes_per_lesion': series_bytes, 's_read_series': read_s}
    if mode == 'ref-local':
        t1, c1 = time.time(), cpu()
        voxels = 0
        for seed in seeds:
            for name in names:
                out, dbg = P.preprocess(vol, spacing, origin, direction, seed, P.MODELS[name], return_debug=True)
                voxels += int(np.prod([h - l for l, h in zip(dbg['lo'], dbg['hi'])]))
        L = len(seeds)
        res['voxels_per_lesion'] = voxels / L
        res['s_per_lesion_in_memory'] = (time.time() - t1) / L
        res['cpu_s_per_lesion_in_memory'] = (cpu() - c1) / L
        res['s_per_lesion_from_disk'] = read_s + res['s_per_lesion_in_memory']
    else:
        seed = seeds[0]
        vol64 = np.asarray(vol, np.float32).astype(np.float64)
        A = P.ras_affine(spacing, origin, direction)
        t1, c1 = time.time(), cpu()
        voxels = 0
        grids = {}
        for name in names:
            cfg = P.MODELS[name]
            key = tuple(cfg['spacing'])
            if key not in grids:
                B, m = P.output_grid(vol.shape, A, cfg['spacing'])
                X = np.linalg.solve(A, B)
                full = np.empty(tuple(int(v) for v in m), np.float32)
                # slabs along the first output axis keep the float64 temporaries small
                step = max(1, int(2_000_000 // (m[1] * m[2])))
                for u0 in range(0, int(m[0]), step):
                    u1 = min(int(m[0]), u0 + step)
                    grid = np.array(np.meshgrid(np.arange(u0, u1), np.arange(m[1]), np.arange(m[2]),
                                                indexing='ij')).reshape(3, -1)
                    ix = P.sample_index(grid, X, vol.shape, m)
                    full[u0:u1] = P.trilinear_zero(vol64, ix).astype(np.float32).reshape(u1 - u0, m[1], m[2])
                grids[key] = (B, m, X, full)
                voxels += int(np.prod(m))
            B, m, X, full = grids[key]
            c = np.linalg.inv(A @ X) @ np.array([-seed[0], -seed[1], seed[2], 1.0])
            c = [int(v) for v in c[:3]]
            roi = cfg['spatial_size']
            lo = [max(c[a] - roi[a] // 2, 0) for a in range(3)]
            hi = [min(c[a] + roi[a] // 2, int(m[a])) for a in range(3)]
            _ = full[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].copy()
        res['voxels_per_lesion'] = voxels
        res['s_resample_per_lesion'] = time.time() - t1
        res['cpu_s_resample_per_lesion'] = cpu() - c1
        res['s_per_lesion_from_disk'] = read_s + res['s_resample_per_lesion']
    res['peak_rss_bytes'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print('BENCH ' + json.dumps(res))


def run_ref(mode, series_dir, seeds):
    out = subprocess.run([sys.executable, __file__, '--child', mode, '--dir', series_dir,
                          '--seeds', json.dumps(seeds)], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith('BENCH '):
            return json.loads(line[6:])
    sys.exit(f'{mode} failed:\n{out.stdout}\n{out.stderr}')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--dir', default=os.path.join(tempfile.gettempdir(), 'connectome-bench-ct512'))
    ap.add_argument('--lesions', type=int, default=20)
    ap.add_argument('--ref-lesions', type=int, default=2)
    ap.add_argument('--child')
    ap.add_argument('--seeds')
    a = ap.parse_args()
    if a.child:
        ref_mode(a.child, a.dir, json.loads(a.seeds))
        return
    with tempfile.TemporaryDirectory() as tmp:
        binary = os.path.join(tmp, 'preprocess.test')
        subprocess.run(['go', 'test', '-c', '-o', binary, './stages/preprocess'], cwd=ROOT, check=True)
        if not os.path.isdir(a.dir) or len(os.listdir(a.dir)) != 300:
            print(f'writing the 512x512x300 series to {a.dir} ...', file=sys.stderr)
            go_driver(binary, 'gen', a.dir, a.lesions)
        seeds = go_driver(binary, 'seeds', a.dir, a.lesions)['seeds']
        rows = {}
        rows['go-crop'] = go_driver(binary, 'crop', a.dir, a.lesions)
        rows['go-whole'] = go_driver(binary, 'whole', a.dir, 1)
    rows['ref-local'] = run_ref('ref-local', a.dir, seeds[:a.ref_lesions])
    rows['ref-whole'] = run_ref('ref-whole', a.dir, seeds[:1])

    base = rows['go-crop']
    mib = 1 << 20
    print(f"\nseries: {base['series_bytes'] / mib:.0f} MiB on disk, 300 files; header pass "
          f"{base['header_bytes'] / mib:.1f} MiB in {base['header_pass_s']:.2f} s (once per series)\n")
    print('| path | files/lesion | MiB read/lesion | voxels sampled/lesion | s/lesion from disk (wall) | '
          'CPU s/lesion (resample) | peak RSS MiB | voxels × | MiB read × | time × |')
    print('|---|---|---|---|---|---|---|---|---|---|')
    for name in ('go-crop', 'go-whole', 'ref-local', 'ref-whole'):
        r = rows[name]
        cpu_s = (1 / r['lesions_per_cpu_s_in_memory'] if name == 'go-crop' else
                 r.get('cpu_s_resample_per_lesion', r.get('cpu_s_per_lesion_in_memory', float('nan'))))
        print(f"| {name} | {r['files_per_lesion']:.1f} | {r['bytes_per_lesion'] / mib:.1f} | "
              f"{r['voxels_per_lesion']:,.0f} | {r['s_per_lesion_from_disk']:.3f} | {cpu_s:.4f} | "
              f"{r['peak_rss_bytes'] / mib:.0f} | {r['voxels_per_lesion'] / base['voxels_per_lesion']:.0f} | "
              f"{r['bytes_per_lesion'] / base['bytes_per_lesion']:.1f} | "
              f"{r['s_per_lesion_from_disk'] / base['s_per_lesion_from_disk']:.1f} |")
    print(f"\ngo-crop in memory (union box loaded, all 9 configs + QC patch, GOMAXPROCS=1): "
          f"{base['lesions_per_cpu_s_in_memory']:.1f} lesions per CPU second "
          f"({base['lesions_per_s_in_memory_wall']:.1f} per wall second on this machine); "
          f"largest allocation per lesion {base['alloc_bytes_per_lesion_max'] / mib:.1f} MiB")
    print('\nraw: ' + json.dumps(rows))


if __name__ == '__main__':
    main()
