"""The notebooks are committed without outputs, with a papermill parameters cell naming run_dir."""

import glob
import os

import nbformat
import pytest

BOOKS = sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "*.ipynb")))


def test_there_are_notebooks():
    assert BOOKS


@pytest.mark.parametrize("book", BOOKS, ids=os.path.basename)
def test_committed_without_outputs(book):
    nb = nbformat.read(book, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "a code cell has outputs: clear them"
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "run_dir =" in params[0].source, "want one cell tagged parameters that sets run_dir"
