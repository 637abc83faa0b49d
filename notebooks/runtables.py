"""A connectome run directory as a notebook reads it.

The paths follow the run-directory layout of the README ("Layout"; internal/layout in the Go
code is the authority, and notebooks/test_runtables.py checks this module against a real demo
run). Every table is an Arrow IPC file with a Parquet copy beside it; both carry the same
schema metadata (pipeline version, IDC release, config hash).
"""

from __future__ import annotations

import glob
import json
import os
import re
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

# The tables of a run, by name: where each lives under the run directory.
TABLES = {
    "lesions": "cohort/lesions.arrow",
    "instances": "cohort/instances.arrow",
    "clinical": "cohort/clinical.arrow",
    "patches": "preprocess/patches.arrow",
    "edges": "similarity/edges.arrow",
    "agreement": "similarity/agreement.arrow",
    "failures": "failures.arrow",
    # The demo's ground truth (each lesion's generated kind), written beside a demo run only.
    "demo_truth": "demo-truth.arrow",
}

# The clinical columns a notebook groups by (cohort/clinical.arrow, one row per patient).
CLINICAL_FACETS = ["cancer_type", "stage", "sex", "smoking"]
# The demo's ground truth, as facets() names it.
DEMO_FACETS = ["generated_kind", "generated_texture"]

_PLAIN = re.compile(r"[A-Za-z0-9._-]")


def file_name(ident: str) -> str:
    """The file name of an id (a lesion id, a model name): layout.FileName of the Go code.

    The id itself when it is made of letters, digits, '-', '_' and '.' only and does not start
    with '.', else every other byte written as %XX.
    """
    if ident and not ident.startswith(".") and all(_PLAIN.fullmatch(c) for c in ident):
        return ident
    out = []
    for i, byte in enumerate(ident.encode()):
        c = chr(byte)
        if byte < 128 and _PLAIN.fullmatch(c) and not (i == 0 and c == "."):
            out.append(c)
        else:
            out.append("%%%02X" % byte)
    return "".join(out) or "%"


def id_of(name: str) -> str | None:
    """The id that file_name turned into name; None for a name file_name cannot make."""
    if name == "%":
        return ""
    raw = bytearray()
    i = 0
    while i < len(name):
        if name[i] == "%":
            try:
                raw.append(int(name[i + 1 : i + 3], 16))
            except ValueError:
                return None
            i += 3
        else:
            raw.append(ord(name[i]))
            i += 1
    try:
        ident = raw.decode()
    except UnicodeDecodeError:
        return None
    return ident if file_name(ident) == name else None


@dataclass
class Run:
    """A run directory.

    embeddings: the embeddings files of a run made from external embeddings (`connectome run
    --from similarity --embeddings FILE...`), whose run directory has no embed/ tables; None
    takes the files the run's manifest names.
    """

    root: str
    embeddings_files: list[str] | None = None

    def path(self, table: str) -> str:
        """The Arrow file of a table named in TABLES."""
        return os.path.join(self.root, TABLES[table])

    def parquet_path(self, arrow_path: str) -> str:
        """The Parquet copy beside an Arrow table."""
        return os.path.splitext(arrow_path)[0] + ".parquet"

    def has(self, table: str) -> bool:
        return os.path.exists(self.path(table))

    def arrow(self, table: str) -> pa.Table:
        """A table read with pyarrow (schema metadata included)."""
        return read_arrow(self.path(table))

    def polars(self, table: str) -> pl.DataFrame:
        """A table read with polars."""
        return pl.read_ipc(self.path(table))

    def manifest(self) -> dict:
        with open(os.path.join(self.root, "manifest.json")) as f:
            return json.load(f)

    # Embeddings: embed/<model>.arrow, one table per model; or the external files of a run made
    # from embeddings made elsewhere (Arrow IPC or Parquet, a model column, maybe several models).

    def embeddings_path(self, model: str) -> str:
        return os.path.join(self.root, "embed", file_name(model) + ".arrow")

    def models(self) -> list[str]:
        """The models with embeddings, sorted."""
        names = []
        for p in glob.glob(os.path.join(self.root, "embed", "*.arrow")):
            ident = id_of(os.path.basename(p)[: -len(".arrow")])
            if ident is not None:
                names.append(ident)
        return sorted(names) or sorted(self._external())

    def embeddings(self, model: str) -> Embeddings:
        t = self.arrow_embeddings(model)
        col = t.column("embedding").combine_chunks()
        if pa.types.is_fixed_size_list(col.type):
            X = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size)
        else:
            X = np.stack([np.asarray(v, dtype=np.float32) for v in col.to_pylist()])
        X = X.astype(np.float32, copy=False)
        ids = t.column("lesion_id" if "lesion_id" in t.column_names else "patient_id").to_pylist()
        pids = t.column("patient_id").to_pylist() if "patient_id" in t.column_names else ids
        return Embeddings(model=model, lesion_ids=ids, patient_ids=pids, X=X)

    def arrow_embeddings(self, model: str) -> pa.Table:
        """A model's embeddings table: embed/<model>.arrow, or its rows of the external files."""
        p = self.embeddings_path(model)
        if os.path.exists(p):
            return read_arrow(p)
        ext = self._external()
        if model not in ext:
            raise FileNotFoundError(f"no embeddings of model {model} in {self.root}/embed or the run's embeddings files")
        return ext[model]

    def embeddings_inputs(self) -> list[str]:
        """The external embeddings files: the given ones, else those the manifest names
        (relative paths there are relative to where the run was started, which the manifest's
        relative run_dir tells)."""
        if self.embeddings_files is not None:
            return list(self.embeddings_files)
        try:
            cfg = self.manifest().get("config", {})
        except FileNotFoundError:
            return []
        files = (cfg.get("similarity") or {}).get("embeddings") or []
        start = os.getcwd()
        run_dir = cfg.get("run_dir", "")
        root = os.path.abspath(self.root)
        if run_dir and not os.path.isabs(run_dir) and root.endswith(os.sep + os.path.normpath(run_dir)):
            start = root[: -len(os.path.normpath(run_dir))]
        return [f if os.path.isabs(f) else os.path.join(start, f) for f in files]

    def _external(self) -> dict[str, pa.Table]:
        if not hasattr(self, "_external_cache"):
            by_model: dict[str, list[pa.Table]] = {}
            for f in self.embeddings_inputs():
                t = pq.read_table(f) if _is_parquet(f) else read_arrow(f)
                for m in sorted(set(t.column("model").to_pylist())):
                    by_model.setdefault(m, []).append(t.filter(pc.equal(t.column("model"), m)))
            self._external_cache = {m: pa.concat_tables(ts) for m, ts in by_model.items()}
        return self._external_cache

    # QC previews: preprocess/qc/<lesion>.png (preprocess/shard-i-of-N/qc/ in a sharded run).

    def qc_preview(self, lesion_id: str) -> str | None:
        """The lesion's QC preview (three planes through the seed), or None when there is none
        (a run from external embeddings has no preprocess stage)."""
        name = file_name(lesion_id) + ".png"
        for d in [os.path.join(self.root, "preprocess", "qc")] + sorted(
            glob.glob(os.path.join(self.root, "preprocess", "shard-*", "qc"))
        ):
            p = os.path.join(d, name)
            if os.path.exists(p):
                return p
        return None


@dataclass
class Embeddings:
    """One model's embeddings: the rows of embed/<model>.arrow as a float32 matrix."""

    model: str
    lesion_ids: list[str]
    patient_ids: list[str]
    X: np.ndarray  # (n, dim), float32


def _is_parquet(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PAR1"


def read_arrow(path: str) -> pa.Table:
    with pa.memory_map(path) as src:
        return ipc.open_file(src).read_all()


def metadata(table: pa.Table) -> dict[str, str]:
    """A table's schema metadata as text."""
    md = table.schema.metadata or {}
    return {k.decode(): v.decode() for k, v in md.items()}


def nodes(run: Run) -> pl.DataFrame:
    """Every lesion of the run, one row each (lesion_id, patient_id): the lesions table when
    the run has one, else the lesions of the embeddings (a run from external embeddings)."""
    if run.has("lesions"):
        return run.polars("lesions").select("lesion_id", "patient_id")
    frames = []
    for m in run.models():
        e = run.embeddings(m)
        frames.append(pl.DataFrame({"lesion_id": e.lesion_ids, "patient_id": e.patient_ids}))
    return pl.concat(frames).unique(subset="lesion_id", keep="first").sort("lesion_id")


def facets(run: Run, extra: str | list[str] = "", extra_key: str = "patient_id") -> pl.DataFrame:
    """One row per lesion with the facets a notebook groups by: the clinical columns (joined
    through patient_id), the demo's generated kind and texture (generated_kind,
    generated_texture) when the run is a demo run, and the columns of extra files (CSV, Parquet
    or Arrow; a list, or one string of comma-separated paths) keyed by extra_key (lesion_id or
    patient_id; a file with several rows for a key keeps the first). A column already there
    from an earlier source keeps its name; the later one gets the file's name as a suffix.

    Empty strings and nulls both mean "unknown" and become null.
    """
    out = nodes(run)
    if run.has("clinical"):
        clin = run.polars("clinical")
        out = out.join(clin.select(["patient_id"] + [c for c in CLINICAL_FACETS if c in clin.columns]),
                       on="patient_id", how="left")
    if run.has("demo_truth"):
        truth = run.polars("demo_truth").select(
            "lesion_id", pl.col("kind").alias("generated_kind"), pl.col("texture").alias("generated_texture")
        )
        out = out.join(truth, on="lesion_id", how="left")
    files = [p.strip() for p in extra.split(",")] if isinstance(extra, str) else list(extra)
    for path in [p for p in files if p]:
        ext = read_any(path)
        if extra_key not in ext.columns:
            raise ValueError(f"{path}: no column {extra_key!r} to join on (columns: {ext.columns})")
        ext = ext.with_columns(pl.col(extra_key).cast(pl.Utf8)).unique(subset=extra_key, keep="first", maintain_order=True)
        stem = os.path.splitext(os.path.basename(path))[0]
        ext = ext.rename({c: f"{c}_{stem}" for c in ext.columns if c != extra_key and c in out.columns})
        out = out.join(ext, on=extra_key, how="left")
    str_cols = [c for c, t in out.schema.items() if t == pl.Utf8]
    return out.with_columns([pl.when(pl.col(c) == "").then(None).otherwise(pl.col(c)).alias(c) for c in str_cols])


def read_any(path: str) -> pl.DataFrame:
    """A CSV, Parquet or Arrow IPC file as a polars frame (CSV columns as text)."""
    ext = os.path.splitext(path)[1].lower()
    if ext in (".parquet", ".pq"):
        return pl.read_parquet(path)
    if ext in (".arrow", ".feather", ".ipc"):
        return pl.read_ipc(path)
    return pl.read_csv(path, infer_schema=False)
