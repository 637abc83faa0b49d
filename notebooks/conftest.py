"""The notebook tests read a finished demo run: runs/demo of the repository (`make notebooks`
makes it first), or the run directory in CONNECTOME_RUN_DIR."""

import os

import pytest

import runtables as rt

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def run_dir() -> str:
    d = os.path.abspath(os.environ.get("CONNECTOME_RUN_DIR") or os.path.join(REPO, "runs", "demo"))
    if not os.path.exists(os.path.join(d, "report", "_SUCCESS.json")):
        pytest.fail(f"{d} is not a finished demo run: make demo (or make notebooks) first")
    return d


@pytest.fixture(scope="session")
def run(run_dir) -> rt.Run:
    return rt.Run(run_dir)
