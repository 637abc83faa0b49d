"""Computes the expected values of one golden case with ../shared/tools/patchref.py (the
independent numpy reference, bit-exact with MONAI 1.5.0): preprocessing-spec §5.1's volume
v[i,j,k] = float32(((37i + 101j + 53k) mod 2000) - 1000) in the case's geometry, cropped
around its seed for each of its models.

usage: golden_oracle.py PATCHREF_DIR CASE_JSON OUT_JSON
CASE_JSON: {"size", "spacing", "origin", "direction", "seed", "models"} (see testdata/golden/)
OUT_JSON: per model {"model", "m", "c", "lo", "hi", "pads", "sum", "centre", "sha256_16"}
"""
import hashlib, json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import patchref as P

case = json.load(open(sys.argv[2]))
n = case["size"]
i, j, k = np.meshgrid(*[np.arange(d) for d in n], indexing="ij")
vol = (((37 * i + 101 * j + 53 * k) % 2000) - 1000).astype(np.float32)
out = []
for model in case["models"]:
    t, dbg = P.preprocess(vol, case["spacing"], case["origin"], case["direction"], case["seed"], P.MODELS[model], return_debug=True)
    t = np.asarray(t, np.float32)
    s = t.shape  # (1, R0, R1, R2)
    centre = t[0, s[1] // 2, s[2] // 2, s[3] // 2]
    out.append({
        "model": model,
        "m": [int(v) for v in dbg["m"]],
        "c": [int(v) for v in dbg["c"]],
        "lo": [int(v) for v in dbg["lo"]],
        "hi": [int(v) for v in dbg["hi"]],
        "pads": [[int(a), int(b)] for a, b in dbg["pads"]],
        "sum": "%.6f" % t.astype(np.float64).sum(),
        "centre": np.format_float_positional(centre, unique=True, trim="-"),
        "sha256_16": hashlib.sha256(t.astype("<f4").tobytes()).hexdigest()[:16],
    })
json.dump(out, open(sys.argv[3], "w"), indent=2)
open(sys.argv[3], "a").write("\n")
