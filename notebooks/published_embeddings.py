"""Turns the published NLST-Sybil connectome embeddings into embeddings files connectome reads.

    python notebooks/published_embeddings.py --from ../shared/reference/nlst-sybil-embeddings \
        --out runs/published-embeddings
    connectome run --from similarity --embeddings runs/published-embeddings/*.parquet --run-dir runs/published

The published embeddings are one <Model>.npy per model (float32, one row per lesion record)
and lesions.csv (row → patient, CT series, seed). This writes one Parquet file per model with
the columns of embed/<model>.arrow: lesion_id, patient_id, model, embedding
(fixed_size_list<float32>), and schema metadata naming the source.

By default it keeps the published connectome's nodes: the patients with exactly one lesion
record (289), each node named by its patient id as on the published page. --all-lesions keeps
every record (734), named <patient_id>-r<row>. The source files are read where they are and
never copied.
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import sys
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def read_lesions(path: str) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for i, r in enumerate(rows):
        if int(r["row"]) != i:
            raise ValueError(f"{path}: row {i} has row number {r['row']}: the .npy rows would not line up")
    return rows


def select(rows: list[dict], all_lesions: bool) -> list[tuple[int, str, str]]:
    """(npy row, lesion id, patient id) of the nodes to keep."""
    if all_lesions:
        return [(int(r["row"]), f"{r['patient_id']}-r{r['row']}", r["patient_id"]) for r in rows]
    per_patient = Counter(r["patient_id"] for r in rows)
    return [(int(r["row"]), r["patient_id"], r["patient_id"]) for r in rows if per_patient[r["patient_id"]] == 1]


def convert(src: str, out: str, all_lesions: bool) -> list[str]:
    rows = read_lesions(os.path.join(src, "lesions.csv"))
    keep = select(rows, all_lesions)
    idx = np.array([k[0] for k in keep])
    written = []
    os.makedirs(out, exist_ok=True)
    for npy in sorted(glob.glob(os.path.join(src, "*.npy"))):
        model = os.path.splitext(os.path.basename(npy))[0]
        X = np.load(npy, mmap_mode="r")
        if X.dtype != np.float32 or X.ndim != 2 or X.shape[0] != len(rows):
            raise ValueError(f"{npy}: {X.dtype} {X.shape}, want float32 ({len(rows)}, D)")
        V = np.ascontiguousarray(X[idx])
        dim = V.shape[1]
        emb = pa.FixedSizeListArray.from_arrays(pa.array(V.ravel(), type=pa.float32()), dim)
        table = pa.table(
            {
                "lesion_id": pa.array([k[1] for k in keep], pa.string()),
                "patient_id": pa.array([k[2] for k in keep], pa.string()),
                "model": pa.array([model] * len(keep), pa.string()),
                "embedding": emb,
            }
        ).replace_schema_metadata(
            {
                "connectome.model": model,
                "connectome.embedding_dim": str(dim),
                "connectome.source": "published NLST-Sybil connectome embeddings (ImagingDataCommons/nlst-sybil-connectome)",
                "connectome.nodes": "every lesion record" if all_lesions else "patients with one lesion record",
            }
        )
        path = os.path.join(out, f"{model}.parquet")
        tmp = path + ".tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, path)
        written.append(path)
        print(f"{path}: {len(keep)} lesions × {dim}")
    if not written:
        raise ValueError(f"{src} has no .npy files")
    return written


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from", dest="src", required=True, help="the folder of the published .npy files and lesions.csv")
    ap.add_argument("--out", required=True, help="folder for the <Model>.parquet files")
    ap.add_argument("--all-lesions", action="store_true", help="every lesion record, not only the single-lesion patients")
    a = ap.parse_args(argv)
    try:
        convert(a.src, a.out, a.all_lesions)
    except (OSError, ValueError) as e:
        print(f"published_embeddings: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
