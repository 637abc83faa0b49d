"""Every table of a run has a Parquet copy beside it that DuckDB (and pyarrow) read back with
the Arrow file's rows, columns and schema metadata."""

import glob
import math
import os

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import runtables as rt


def tables_of(run_dir: str) -> list[str]:
    """Every Arrow table of the run with a Parquet copy: the named tables and every model's embeddings."""
    run = rt.Run(run_dir)
    named = list(rt.TABLES)
    for t in named:
        assert run.has(t), f"the demo run has no {rt.TABLES[t]}"
    paths = [run.path(t) for t in named] + [run.embeddings_path(m) for m in run.models()]
    assert run.models()
    return paths


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def test_parquet_copies_read_by_duckdb(run_dir):
    con = duckdb.connect()
    for path in tables_of(run_dir):
        arrow = rt.read_arrow(path)
        pq_path = os.path.splitext(path)[0] + ".parquet"
        assert os.path.exists(pq_path), f"no Parquet copy of {path}"
        name = os.path.relpath(path, run_dir)

        n = con.execute("SELECT count(*) FROM read_parquet(?)", [pq_path]).fetchone()[0]
        assert n == arrow.num_rows, f"{name}: DuckDB counts {n} rows, the Arrow file has {arrow.num_rows}"
        cols = [r[0] for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [pq_path]).fetchall()]
        assert cols == arrow.column_names, f"{name}: columns {cols}"

        kv = {k.decode(): v.decode() for k, v in con.execute(
            "SELECT key, value FROM parquet_kv_metadata(?)", [pq_path]).fetchall()}
        md = rt.metadata(arrow)
        assert md, f"{name}: the Arrow file has no schema metadata"
        for k, v in md.items():
            assert kv.get(k) == v, f"{name}: Parquet key-value {k} = {kv.get(k)!r}, the Arrow file's {v!r}"

        got = con.sql(f"SELECT * FROM read_parquet('{pq_path}')").to_arrow_table()
        for c in arrow.column_names:
            assert same(got.column(c).to_pylist(), arrow.column(c).to_pylist()), f"{name}: column {c} differs"
        print(f"{name}: {n} rows, {len(cols)} columns, {len(md)} metadata keys: equal in DuckDB")


def test_parquet_copies_keep_the_arrow_schema(run_dir):
    """pyarrow gets back the exact Arrow schema (fixed_size_list included) and its metadata."""
    for path in tables_of(run_dir):
        arrow = rt.read_arrow(path)
        back = pq.read_table(os.path.splitext(path)[0] + ".parquet")
        assert plain(back.schema).equals(plain(arrow.schema), check_metadata=True), f"{path}: {back.schema} vs {arrow.schema}"
        assert back.cast(arrow.schema).equals(arrow), f"{path}: rows differ"


def plain(schema: pa.Schema) -> pa.Schema:
    """schema with its lists' element fields named "item": the Parquet copy names them
    "element", as the Parquet format does; nothing else may differ."""
    def field(f: pa.Field) -> pa.Field:
        t = f.type
        if pa.types.is_fixed_size_list(t):
            t = pa.list_(pa.field("item", t.value_type, t.value_field.nullable), t.list_size)
        elif pa.types.is_list(t):
            t = pa.list_(pa.field("item", t.value_type, t.value_field.nullable))
        return pa.field(f.name, t, f.nullable, f.metadata)
    return pa.schema([field(f) for f in schema], metadata=schema.metadata)


def test_sql_across_parquet_tables(run_dir):
    """A query a DuckDB or BigQuery user would write: closest pairs joined with the clinical table."""
    run = rt.Run(run_dir)
    pqp = lambda t: run.parquet_path(run.path(t))  # noqa: E731
    rows = duckdb.sql(f"""
        SELECT e.model, count(*) AS pairs, avg((cq.cancer_type = cm.cancer_type)::INT) AS same_type
        FROM read_parquet('{pqp("edges")}') e
        JOIN read_parquet('{pqp("lesions")}') lq ON lq.lesion_id = e.query_lesion_id
        JOIN read_parquet('{pqp("lesions")}') lm ON lm.lesion_id = e.match_lesion_id
        JOIN read_parquet('{pqp("clinical")}') cq ON cq.patient_id = lq.patient_id
        JOIN read_parquet('{pqp("clinical")}') cm ON cm.patient_id = lm.patient_id
        WHERE e.kind = 'closest' GROUP BY e.model ORDER BY e.model""").fetchall()
    closest = run.polars("edges").filter(run.polars("edges")["kind"] == "closest")
    assert [r[0] for r in rows] == run.models()
    assert sum(r[1] for r in rows) == closest.height
    assert all(0 <= r[2] <= 1 for r in rows)


def test_no_parquet_copy_of_work_files(run_dir):
    """The stages' own work files (embed parts, patch records) stay Arrow only."""
    work = glob.glob(os.path.join(run_dir, "embed", "parts", "**", "*"), recursive=True) + glob.glob(
        os.path.join(run_dir, "preprocess", "records", "*"))
    assert work, "the demo run has no work files to check"
    assert not [p for p in work if p.endswith(".parquet")]
