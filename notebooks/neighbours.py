"""Statistics of a run's neighbour lists: enrichment of a facet among the closest neighbours
against a permutation baseline, model agreement, and an exact cosine search to recompute the
lists from embeddings (for controls such as shuffled embeddings).

The notebooks import it, and notebooks/test_neighbours.py checks it on the demo run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

CLOSEST, FARTHEST = "closest", "farthest"


def closest_matrix(edges: pl.DataFrame, model: str, k: int) -> tuple[list[str], np.ndarray]:
    """The model's closest lists as (query ids sorted, a len(ids) × k matrix of match ids),
    ranks 1..k in order. A query with fewer than k matches (a model with ≤ k nodes) gets None
    in the missing places."""
    e = (
        edges.filter((pl.col("model") == model) & (pl.col("kind") == CLOSEST) & (pl.col("rank") <= k))
        .sort(["query_lesion_id", "rank"])
    )
    lists = e.group_by("query_lesion_id", maintain_order=True).agg(pl.col("match_lesion_id"))
    ids = lists["query_lesion_id"].to_list()
    M = np.full((len(ids), k), None, dtype=object)
    for i, matches in enumerate(lists["match_lesion_id"].to_list()):
        M[i, : len(matches)] = matches
    return ids, M


@dataclass
class Enrichment:
    """How often a query's closest neighbours share its value of a facet."""

    observed: float  # mean over queries of the share of their (known-valued) neighbours with the query's value
    ci_low: float  # 95 % bootstrap interval of observed (queries resampled)
    ci_high: float
    baseline: float  # mean of observed under the permutation null (values shuffled among the nodes)
    null_low: float  # 2.5 and 97.5 percentiles of the null
    null_high: float
    p_value: float  # one-sided: P(null ≥ observed), with the +1 correction
    queries: int  # queries with a known value and at least one known-valued neighbour
    null: np.ndarray  # the permutation statistics

    @property
    def ratio(self) -> float:
        return self.observed / self.baseline if self.baseline > 0 else float("nan")


def _codes(ids: list[str], labels: dict[str, object]) -> tuple[np.ndarray, dict[str, int]]:
    values = sorted({str(v) for v in labels.values() if v is not None})
    code = {v: i for i, v in enumerate(values)}
    index = {lid: i for i, lid in enumerate(ids)}
    out = np.full(len(ids), -1, dtype=np.int64)
    for lid, v in labels.items():
        if lid in index and v is not None:
            out[index[lid]] = code[str(v)]
    return out, index


def _share(q: np.ndarray, L: np.ndarray) -> np.ndarray:
    """Per query (rows), the share of known-valued neighbours (L ≥ 0) with the query's value q;
    NaN where the query's value is unknown or no neighbour's is known. Batched over leading
    axes: q (..., n), L (..., n, k)."""
    known = L >= 0
    same = (L == q[..., None]) & known
    n_known = known.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = same.sum(-1) / n_known
    return np.where((q >= 0) & (n_known > 0), s, np.nan)


def enrichment(
    query_ids: list[str],
    matches: np.ndarray,
    labels: dict[str, object],
    n_permutations: int = 1000,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> Enrichment:
    """Enrichment of a facet among the closest neighbours.

    query_ids and matches are closest_matrix's; labels maps lesion id → value (None: unknown).
    The null shuffles the known values among the lesions that have one (the graph and the
    value counts stay as they are), so its mean is what chance gives for this graph.
    """
    nodes = sorted(set(query_ids) | {m for m in matches.ravel() if m is not None})
    codes, index = _codes(nodes, labels)
    qi = np.array([index[q] for q in query_ids], dtype=np.int64)
    mi = np.array([[index[m] if m is not None else -1 for m in row] for row in matches], dtype=np.int64).reshape(
        len(query_ids), -1
    )

    def stat(c: np.ndarray) -> np.ndarray:
        L = np.where(mi >= 0, c[..., np.maximum(mi, 0)], -1)
        return _share(c[..., qi], L)

    s = stat(codes)
    ok = ~np.isnan(s)
    observed = float(s[ok].mean()) if ok.any() else float("nan")

    rng = np.random.default_rng(seed)
    known = np.flatnonzero(codes >= 0)
    perm = np.repeat(codes[None, :], n_permutations, axis=0)
    for p in range(n_permutations):
        perm[p, known] = codes[known][rng.permutation(len(known))]
    sp = stat(perm)
    null = np.nanmean(sp, axis=1)

    vals = s[ok]
    boot = vals[rng.integers(0, len(vals), size=(n_bootstrap, len(vals)))].mean(1) if len(vals) else np.array([np.nan])
    return Enrichment(
        observed=observed,
        ci_low=float(np.percentile(boot, 2.5)),
        ci_high=float(np.percentile(boot, 97.5)),
        baseline=float(null.mean()),
        null_low=float(np.percentile(null, 2.5)),
        null_high=float(np.percentile(null, 97.5)),
        p_value=float((1 + np.sum(null >= observed)) / (1 + n_permutations)),
        queries=int(ok.sum()),
        null=null,
    )


def enrichment_table(
    edges: pl.DataFrame,
    facets: pl.DataFrame,
    facet_names: list[str],
    k: int,
    n_permutations: int = 1000,
    seed: int = 0,
) -> pl.DataFrame:
    """enrichment() for every model of edges and every facet: one row per (model, facet)."""
    rows = []
    for model in sorted(edges["model"].unique().to_list()):
        ids, M = closest_matrix(edges, model, k)
        for facet in facet_names:
            labels = dict(zip(facets["lesion_id"].to_list(), facets[facet].to_list()))
            e = enrichment(ids, M, labels, n_permutations=n_permutations, seed=seed)
            rows.append(
                dict(
                    model=model, facet=facet, observed=e.observed, ci_low=e.ci_low, ci_high=e.ci_high,
                    baseline=e.baseline, null_low=e.null_low, null_high=e.null_high,
                    ratio=e.ratio, p_value=e.p_value, queries=e.queries,
                )
            )
    return pl.DataFrame(rows)


def agreement(edges: pl.DataFrame, k: int | None = None) -> pl.DataFrame:
    """Model agreement as similarity/agreement.arrow defines it: for every pair of models (in
    name order), the mean over the lesions both have of |closest(A) ∩ closest(B)| / the longer
    list's length. Summed in lesion-id order, as the pipeline does, so the floats are equal."""
    c = edges.filter(pl.col("kind") == CLOSEST)
    if k is not None:
        c = c.filter(pl.col("rank") <= k)
    lists: dict[str, dict[str, list[str]]] = {}
    for (model,), g in c.sort(["model", "query_lesion_id", "rank"]).group_by("model", maintain_order=True):
        agg = g.group_by("query_lesion_id", maintain_order=True).agg(pl.col("match_lesion_id"))
        lists[model] = dict(zip(agg["query_lesion_id"].to_list(), agg["match_lesion_id"].to_list()))
    names = sorted(lists)
    kk = int(c["rank"].max()) if k is None else k
    rows = []
    for a_i, a in enumerate(names):
        for b in names[a_i + 1 :]:
            total, n = 0.0, 0
            for q in sorted(lists[a]):
                la, lb = lists[a][q], lists[b].get(q)
                if lb is None:
                    continue
                den = max(len(la), len(lb))
                if den == 0:
                    continue
                total += sum(1 for x in la if x in lb) / den
                n += 1
            rows.append(dict(model_a=a, model_b=b, k=kk, mean_overlap=total / n if n else float("nan")))
    return pl.DataFrame(rows, schema={"model_a": pl.Utf8, "model_b": pl.Utf8, "k": pl.Int32, "mean_overlap": pl.Float64})


def knn_edges(model: str, lesion_ids: list[str], patient_ids: list[str], X: np.ndarray, k: int) -> pl.DataFrame:
    """The k closest and k farthest of every lesion by cosine distance, exactly, as the
    similarity stage computes them (float64, ties broken by lesion-id order), in the columns
    of similarity/edges.arrow. Dense: for the few thousand lesions a notebook handles."""
    order = np.argsort(np.array(lesion_ids, dtype=object), kind="stable")
    ids = [lesion_ids[i] for i in order]
    pids = [patient_ids[i] for i in order]
    V = X[order].astype(np.float64)
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    D = 1.0 - V @ V.T
    n = len(ids)
    kk = min(k, n - 1)
    rows = {c: [] for c in ("model", "kind", "query_lesion_id", "match_lesion_id", "query_patient_id",
                            "match_patient_id", "rank", "cosine_distance", "similarity_pct")}
    idx = np.arange(n)
    for q in range(n):
        others = idx[idx != q]
        d = D[q, others]
        for kind, key in ((CLOSEST, (others, d)), (FARTHEST, (others, -d))):
            sel = np.lexsort(key)[:kk]  # by distance (or its negative), then by index = id order
            for r, j in enumerate(sel):
                m = others[j]
                rows["model"].append(model)
                rows["kind"].append(kind)
                rows["query_lesion_id"].append(ids[q])
                rows["match_lesion_id"].append(ids[m])
                rows["query_patient_id"].append(pids[q])
                rows["match_patient_id"].append(pids[m])
                rows["rank"].append(r + 1)
                rows["cosine_distance"].append(float(D[q, m]))
                rows["similarity_pct"].append(max(0.0, 1.0 - float(D[q, m])) * 100)
    return pl.DataFrame(rows, schema_overrides={"rank": pl.Int32})


def shuffled(X: np.ndarray, seed: int) -> np.ndarray:
    """X with its rows permuted: every lesion gets another lesion's embedding, so any link
    between a lesion's facets and its neighbours is gone (the negative control)."""
    return X[np.random.default_rng(seed).permutation(len(X))]
