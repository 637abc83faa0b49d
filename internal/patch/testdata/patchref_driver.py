"""Runs ../shared/tools/patchref.py on one DICOM series for many (model, seed) pairs.

usage: patchref_driver.py PATCHREF_DIR SERIES_DIR JOBS_JSON OUT_DIR
JOBS_JSON: [{"name": ..., "model": ..., "seed": [x, y, z]}, ...]
Writes OUT_DIR/<name>.npy and OUT_DIR/<name>.json ({"m","c","lo","hi"} or {"error"}).
"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import patchref as P

vol, spacing, origin, direction = P.read_series(sys.argv[2])
for job in json.load(open(sys.argv[3])):
    base = os.path.join(sys.argv[4], job["name"])
    try:
        out, dbg = P.preprocess(vol, spacing, origin, direction, job["seed"], P.MODELS[job["model"]], return_debug=True)
    except AssertionError as e:
        json.dump({"error": str(e)}, open(base + ".json", "w"))
        continue
    np.save(base + ".npy", np.asarray(out, np.float32))
    json.dump({"m": [int(v) for v in dbg["m"]], "c": [int(v) for v in dbg["c"]],
               "lo": [int(v) for v in dbg["lo"]], "hi": [int(v) for v in dbg["hi"]]}, open(base + ".json", "w"))
