"""The statistics of neighbours.py on the demo run, whose ground truth is known: the generated
tumour kinds (solid, part-solid, ground-glass) must be enriched among the closest neighbours far
above the permutation baseline, and not at all once the embeddings are shuffled."""

import numpy as np
import polars as pl
import pytest

import neighbours as nb
import runtables as rt

K = 5
PERMUTATIONS = 2000
SHUFFLES = 20


@pytest.fixture(scope="module")
def edges(run):
    return run.polars("edges")


@pytest.fixture(scope="module")
def kinds(run):
    f = rt.facets(run)
    assert f["generated_kind"].null_count() == 0, "a lesion of the demo run has no generated kind"
    return dict(zip(f["lesion_id"].to_list(), f["generated_kind"].to_list()))


def test_generated_kinds_enriched_far_above_baseline(run, edges, kinds):
    assert run.models(), "the demo run has no embeddings"
    for model in run.models():
        ids, M = nb.closest_matrix(edges, model, K)
        e = nb.enrichment(ids, M, kinds, n_permutations=PERMUTATIONS, seed=1)
        print(f"{model}: kind shared by {e.observed:.3f} of the {K} closest (95 % CI {e.ci_low:.3f}–{e.ci_high:.3f}); "
              f"permutation baseline {e.baseline:.3f} (95 % {e.null_low:.3f}–{e.null_high:.3f}); "
              f"{e.ratio:.2f}×, p = {e.p_value:.5f}, {e.queries} tumours")
        assert e.queries == len(kinds)
        assert e.observed > 2 * e.baseline, f"{model}: {e.observed:.3f} is not far above the baseline {e.baseline:.3f}"
        assert e.ci_low > e.null.max(), f"{model}: the interval reaches into the permutation null"
        assert e.p_value == pytest.approx(1 / (1 + PERMUTATIONS)), f"{model}: some permutation reached the observed"


def test_shuffled_embeddings_at_baseline(run, edges, kinds):
    for model in run.models():
        emb = run.embeddings(model)
        shuffled = []
        for s in range(SHUFFLES):
            sh = nb.knn_edges(model, emb.lesion_ids, emb.patient_ids, nb.shuffled(emb.X, seed=100 + s), K)
            ids, M = nb.closest_matrix(sh, model, K)
            shuffled.append(nb.enrichment(ids, M, kinds, n_permutations=PERMUTATIONS, seed=1))
        null = shuffled[0].null  # the graph changes, the null's distribution does not (same value counts)
        obs = np.array([e.observed for e in shuffled])
        se = null.std() / np.sqrt(SHUFFLES)
        print(f"{model}: shuffled embeddings give {obs.mean():.3f} ± {obs.std():.3f} over {SHUFFLES} shuffles; "
              f"baseline {null.mean():.3f} (sd {null.std():.3f}); mean p {np.mean([e.p_value for e in shuffled]):.2f}")
        assert abs(obs.mean() - null.mean()) < 3 * se, f"{model}: shuffled enrichment {obs.mean():.3f} is not at the baseline"
        lo, hi = np.percentile(null, [0.1, 99.9])
        assert ((obs >= lo) & (obs <= hi)).all(), f"{model}: a shuffle fell outside the null's 99.8 % range: {obs}"


def test_exact_search_reproduces_the_edges(run, edges):
    """The control's neighbours come from knn_edges: on the real embeddings it gives the
    pipeline's edges, the same matches in the same order."""
    for model in run.models():
        emb = run.embeddings(model)
        mine = nb.knn_edges(model, emb.lesion_ids, emb.patient_ids, emb.X, K).sort(["kind", "query_lesion_id", "rank"])
        ref = edges.filter(pl.col("model") == model).sort(["kind", "query_lesion_id", "rank"])
        assert mine.height == ref.height
        for col in ("query_lesion_id", "match_lesion_id", "query_patient_id", "match_patient_id", "rank"):
            assert mine[col].to_list() == ref[col].to_list(), f"{model}: {col} differs"
        diff = np.abs(mine["cosine_distance"].to_numpy() - ref["cosine_distance"].to_numpy()).max()
        assert diff < 1e-12, f"{model}: distances differ by {diff}"


def test_agreement_equals_the_table(run, edges):
    mine = nb.agreement(edges)
    stored = run.polars("agreement")
    both = mine.join(stored, on=["model_a", "model_b"], suffix="_stored")
    assert both.height == stored.height == mine.height > 0
    assert (both["k"] == both["k_stored"]).all()
    diff = (both["mean_overlap"] - both["mean_overlap_stored"]).abs().max()
    print(f"agreement recomputed from the edges: {both.height} pairs, max |difference| from agreement.arrow {diff}")
    assert diff <= 1e-12


def _ring(groups: int, size: int, same: bool) -> tuple[list[str], np.ndarray, dict]:
    """A graph whose every node's closest are the other members of its group (same=True) or
    members of the next group (same=False)."""
    ids = [f"n{g}-{i}" for g in range(groups) for i in range(size)]
    labels = {f"n{g}-{i}": f"g{g}" for g in range(groups) for i in range(size)}
    M = np.empty((len(ids), size - 1), dtype=object)
    for g in range(groups):
        for i in range(size):
            tg = g if same else (g + 1) % groups
            M[g * size + i] = [f"n{tg}-{j}" for j in range(size) if not (same and j == i)][: size - 1]
    return ids, M, labels


def test_enrichment_on_known_graphs():
    ids, M, labels = _ring(4, 6, same=True)
    e = nb.enrichment(ids, M, labels, n_permutations=500)
    assert e.observed == 1.0 and e.ci_low == 1.0
    assert e.baseline == pytest.approx(5 / 23, abs=0.03)  # a random other node shares the group
    assert e.p_value == pytest.approx(1 / 501)
    ids, M, labels = _ring(4, 6, same=False)
    e = nb.enrichment(ids, M, labels, n_permutations=500)
    assert e.observed == 0.0 and e.p_value == 1.0


def test_unknown_values_are_left_out():
    ids, M, labels = _ring(3, 4, same=True)
    labels["n0-0"] = None  # a query without a value is not counted, nor is it counted as a neighbour
    e = nb.enrichment(ids, M, labels, n_permutations=100)
    assert e.queries == 11
    assert e.observed == 1.0
