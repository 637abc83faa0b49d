"""runtables.py against the Go layout: file names of ids, and every path on a real demo run."""

import os

import pytest

import runtables as rt

# The cases of internal/layout's TestFileNameIsOneSafeElementAndRoundTrips.
FILE_NAMES = [
    ("L00067", "L00067"),
    ("100012_T1_L1", "100012_T1_L1"),
    ("CTClipVit", "CTClipVit"),
    ("a.b-c_d", "a.b-c_d"),
    ("../../../../outside/pwn", "%2E.%2F..%2F..%2F..%2Foutside%2Fpwn"),
    ("a/b", "a%2Fb"),
    (".hidden", "%2Ehidden"),
    ("..", "%2E."),
    ("100%", "100%25"),
    ("é", "%C3%A9"),
    ("", "%"),
]


@pytest.mark.parametrize("ident,name", FILE_NAMES)
def test_file_name_as_layout(ident, name):
    assert rt.file_name(ident) == name
    assert rt.id_of(name) == ident


@pytest.mark.parametrize("name", [".tmp-x", "a%2", "a%zz", "a b", "%2e%2e"])
def test_names_file_name_cannot_make(name):
    assert rt.id_of(name) is None


def test_every_path_on_the_demo_run(run):
    for table in rt.TABLES:
        assert run.has(table), f"the demo run has no {rt.TABLES[table]}"
    assert run.models() == sorted(run.manifest()["models"]), "embed/*.arrow differ from the manifest's models"
    lesions = run.polars("lesions")
    for lid in lesions["lesion_id"]:
        p = run.qc_preview(lid)
        assert p and os.path.getsize(p) > 0, f"no QC preview for {lid}"
    for m in run.models():
        e = run.embeddings(m)
        assert sorted(e.lesion_ids) == sorted(lesions["lesion_id"].to_list())
        assert e.X.shape[0] == len(e.lesion_ids) and e.X.dtype.name == "float32"


def test_facets_one_row_per_lesion(run):
    f = rt.facets(run)
    assert f.height == run.polars("lesions").height == f["lesion_id"].n_unique()
    for c in rt.CLINICAL_FACETS + rt.DEMO_FACETS:
        assert c in f.columns
    assert f["cancer_type"].null_count() < f.height
