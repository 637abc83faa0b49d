"""Executes the notebooks of this folder on a run directory (papermill), as `make notebooks` does.

    python notebooks/execute.py --run-dir runs/demo --out test-artifacts/notebooks/demo
    python notebooks/execute.py --run-dir runs/published --params notebooks/published.yaml \
        --out runs/published/notebooks --html docs/example-published.html

Each notebook runs in its own kernel with notebooks/ as its working directory, with run_dir and
the parameters of --params injected; the executed copy (with outputs) goes to --out. A cell
error stops it with a non-zero exit. --html also renders the executed notebook (only one
notebook may be given then, with --notebook) as a self-contained HTML page.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time

import papermill as pm
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))


def render_html(executed: str, html: str) -> None:
    import nbconvert
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    exporter = nbconvert.HTMLExporter()
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nb)
    os.makedirs(os.path.dirname(os.path.abspath(html)), exist_ok=True)
    tmp = html + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(body)
    os.replace(tmp, html)
    print(f"rendered {html} ({os.path.getsize(html) / 1e6:.2f} MB)")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", required=True, help="the run directory the notebooks read")
    ap.add_argument("--out", required=True, help="folder for the executed copies")
    ap.add_argument("--params", help="YAML file of more notebook parameters (paths in it relative to the repository root)")
    ap.add_argument("--notebook", action="append", help="a notebook to run (default: every notebooks/*.ipynb)")
    ap.add_argument("--html", help="also render the executed notebook as this HTML file")
    ap.add_argument("--timeout", type=int, default=600, help="seconds a cell may take")
    a = ap.parse_args(argv)

    if not os.path.exists(os.path.join(a.run_dir, "similarity", "edges.arrow")):
        print(f"{a.run_dir} has no similarity/edges.arrow: not a finished run", file=sys.stderr)
        return 1
    # Paths go in relative to the kernel's working directory (this folder), so that an executed
    # or rendered notebook shows no path of the machine it ran on.
    params = {"run_dir": os.path.relpath(a.run_dir, HERE)}
    if a.params:
        with open(a.params) as f:
            extra = yaml.safe_load(f) or {}
        base = os.path.dirname(HERE)  # the repository root
        for key in ("facets_file", "embeddings_files"):
            if extra.get(key):
                extra[key] = ",".join(os.path.relpath(os.path.join(base, p.strip()), HERE) for p in extra[key].split(","))
        params.update(extra)
    books = a.notebook or sorted(glob.glob(os.path.join(HERE, "*.ipynb")))
    if a.html and len(books) != 1:
        print("--html renders one notebook: give it with --notebook", file=sys.stderr)
        return 2
    os.makedirs(a.out, exist_ok=True)
    # One OpenMP/BLAS thread per kernel: the tables are small, and on a busy machine t-SNE's
    # spinning threads took 8× longer than one thread (measured on a 2-core CI machine).
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    for book in books:
        out = os.path.join(a.out, os.path.basename(book))
        t0 = time.time()
        print(f"executing {os.path.relpath(book)} on {a.run_dir} → {out}", flush=True)
        pm.execute_notebook(
            book, out, parameters=params, cwd=HERE, kernel_name="python3",
            execution_timeout=a.timeout, progress_bar=False,
        )
        print(f"  done in {time.time() - t0:.0f} s", flush=True)
        if a.html:
            render_html(out, a.html)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
