#!/usr/bin/env python3
"""Export the 9 published tumour encoders of the connectome to ONNX.

For each model it:
  1. builds the network from its published code as TumorImagingBench uses it
     (preprocessing-spec §3; scripts/export/models.py says which package holds each),
  2. loads the checkpoint strictly: every tensor of the network must come from it, and every
     checkpoint key must be used or dropped by a named rule (the reasons are logged),
  3. applies the export fixes (ContBatchNorm3d -> InstanceNorm3d for ModelsGen and SuPreM,
     Merlin without gradient checkpointing or an ImageNet download, our own CTViT for CT-CLIP),
  4. exports at the static input shape (N, 1, R0, R1, R2), opset 17, a symbolic batch axis and a
     static embedding dimension, into a fresh temporary directory,
  5. checks ONNX Runtime (CPU) against PyTorch on random inputs: cosine >= 0.99999 and max
     relative difference <= 1e-4 per embedding, and the output shape (N, embedding_dim),
  6. only then moves <name>.onnx (+ <name>.onnx.data for Voco) into --out, writes
     <name>.onnx.sha256, and records the model in <out>/models.yaml (configs/models.yaml's entry
     with the checksums filled in).
A model that fails is reported and leaves nothing in --out; the others go on.

Weights:
  --weights-dir DIR     the published checkpoints (downloaded there when absent: Hugging Face,
                        Zenodo, NVIDIA; needs internet and huggingface_hub)
  --random-weights SEED no download: random weights written as a checkpoint in each model's
                        published key layout (<out>/checkpoints/), then loaded through the same
                        strict loader; FMCIB writes both of its formats and both must load equal.

Reference embeddings (for the Go embed-stage test):
  --reference-inputs DIR  for each DIR/<model>.npy (float32, (N, 1, R0, R1, R2)), write
                          DIR/<model>.torch.npy: PyTorch's embeddings from the same checkpoint
                          (random: <out>/checkpoints/; real: --weights-dir). Exports nothing.

Usage (environment: make export-venv, or pip install -r scripts/requirements-export.txt):
  python3 scripts/export_models.py --random-weights 0 --out weights-random
  python3 scripts/export_models.py --weights-dir ~/connectome-weights --out weights [--models CTFM,FMCIB]
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from export import common  # noqa: E402
from export.common import ExportError, log, sha256  # noqa: E402
from export.models import BY_NAME, MODELS, build, randomize, same_tensors  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPSET = 17
COS_MIN = 0.99999
REL_MAX = 1e-4

# Where each model's published weights come from (--weights-dir mode).
WEIGHTS = {
    "CTClipVit": ("hf-dataset", "ibrahimhamamci/CT-RATE", "models/CT-CLIP-Related/CT-CLIP_v2.pt"),
    "CTFM": ("hf", "surajpaib/CT-FM-SegResNet", "pretrained_segresnet.torch"),
    "FMCIB": ("url", "https://zenodo.org/records/10528450/files/model_weights.torch", "model_weights.torch"),
    "Merlin": ("hf", "stanfordmimi/Merlin", "i3_resnet_clinical_longformer_best_clip_04-02-2024_23-21-36_epoch_99.pt"),
    "ModelsGen": ("hf", "MrGiovanni/ModelsGenesis", "Genesis_Chest_CT.pt"),
    "PASTA": ("hf", "surajpaib/PASTA-Model", "PASTA final.pth"),
    "SUPREME": ("hf", "MrGiovanni/SuPreM", "supervised_suprem_unet_2100.pth"),
    "VISTA3D": ("url", "https://developer.download.nvidia.com/assets/Clara/monai/tutorials/model_zoo/model_vista3d.pt", "model_vista3d.pt"),
    "Voco": ("hf", "Luffy503/VoCo", "VoCo_H_SSL_head.pt"),
}


def fetch_weights(name, weights_dir):
    kind, repo, fname = WEIGHTS[name]
    local_dir = os.path.join(weights_dir, name)
    local = os.path.join(local_dir, fname)  # hf_hub_download keeps the repository's sub-path
    if os.path.exists(local):
        return local
    os.makedirs(local_dir, exist_ok=True)
    if kind in ("hf", "hf-dataset"):
        from huggingface_hub import hf_hub_download

        return hf_hub_download(repo_id=repo, filename=fname, repo_type="dataset" if kind == "hf-dataset" else None,
                               local_dir=local_dir)
    import urllib.request

    log("download", repo)
    tmp = local + ".part"
    urllib.request.urlretrieve(repo, tmp)
    os.replace(tmp, local)
    return local


def checkpoint_paths(name, args):
    """The checkpoint file(s) of a model: [(variant, path)], the exported one first."""
    if args.random_weights is None:
        path = fetch_weights(name, args.weights_dir)
        return [("published", path)]
    d = os.path.join(args.out, "checkpoints")
    return [(v, os.path.join(d, "%s.%s.pt" % (name, v))) for v in random_variants(name)]


def random_variants(name):
    return ["lighter", "vissl"] if name == "FMCIB" else ["published"]


def write_random_checkpoints(model, args):
    """Random weights (seed) in the published layout(s), written atomically under <out>/checkpoints."""
    import torch

    enc = model.encoder()
    randomize(enc, args.random_weights)
    layouts = model.layouts(enc.state_dict())
    d = os.path.join(args.out, "checkpoints")
    os.makedirs(d, exist_ok=True)
    paths = []
    for (variant, obj), want in zip(layouts, random_variants(model.name)):
        path = os.path.join(d, "%s.%s.pt" % (model.name, want))
        tmp = path + ".tmp"
        torch.save(obj, tmp)
        os.replace(tmp, path)
        log("%s: random checkpoint (seed %d, layout %s) %s, %.1f MB" % (
            model.name, args.random_weights, variant, path, os.path.getsize(path) / 1e6))
        paths.append((want, path))
    return paths


def load_model(name, args):
    """The module to export, from the model's checkpoint(s); other variants must load equal."""
    model = BY_NAME[name]
    paths = checkpoint_paths(name, args)
    if args.random_weights is not None and not args.reference_inputs:
        paths = write_random_checkpoints(model, args)
    if args.reference_inputs:
        paths = paths[:1]  # the exported one
    if args.random_weights is None:
        log("%s: weights %s (sha256 %s)" % (name, paths[0][1], sha256(paths[0][1])))
    net, _ = build(model, common.torch_load(paths[0][1]))
    for variant, path in paths[1:]:
        other, _ = build(model, common.torch_load(path))
        if not same_tensors(net, other):
            raise ExportError("%s: the %s checkpoint loads different tensors than the %s one" % (name, variant, paths[0][0]))
        log("%s: the %s format loads the same %d tensors" % (name, variant, len(other.state_dict())))
        if args.random_weights is not None:
            os.remove(path)  # proven equal to the exported one: no need to keep its disk space
    return model, net


def random_input(model, n, seed):
    import torch

    lo, hi = model.value_range
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n,) + model.shape, generator=g) * (hi - lo) + lo


def compare(want, got):
    """(worst cosine, worst max relative difference) over the rows of two (N, D) arrays. The
    relative difference is taken against the row's largest magnitude, so that components near
    zero do not dominate."""
    import numpy as np

    want = want.astype(np.float64)
    got = got.astype(np.float64)
    cos = (want * got).sum(1) / (np.linalg.norm(want, axis=1) * np.linalg.norm(got, axis=1) + 1e-300)
    rel = np.abs(want - got).max(1) / (np.abs(want).max(1) + 1e-300)
    return float(cos.min()), float(rel.max())


def onnx_export(model, net, tmpdir):
    """Export into tmpdir; returns (onnx path, external data file name or None)."""
    import onnx
    import torch

    path = os.path.join(tmpdir, model.name + ".onnx")
    dummy = random_input(model, 2, 0)
    torch.onnx.export(net, (dummy,), path, input_names=["input"], output_names=["embedding"], opset_version=OPSET,
                      dynamic_axes={"input": {0: "N"}, "embedding": {0: "N"}}, do_constant_folding=True, dynamo=False)
    m = onnx.load(path)
    out = m.graph.output[0].type.tensor_type.shape.dim
    inferred = onnx.shape_inference.infer_shapes(m).graph.output[0].type.tensor_type.shape.dim
    if len(out) != 2:
        raise ExportError("%s: output has rank %d, want 2" % (model.name, len(out)))
    if inferred[1].dim_value not in (0, model.dim):
        raise ExportError("%s: ONNX shape inference gives embedding dimension %d, want %d" % (
            model.name, inferred[1].dim_value, model.dim))
    # The graph ends in a Reshape to (-1, dim); declare the dimension on the output so that
    # readers of the signature (connectome models verify) see it without running the graph.
    out[1].Clear()
    out[1].dim_value = model.dim
    data = None
    if model.name == "Voco":
        # 1.18 GB of weights: external data (preprocessing-spec §3.1), written fresh in tmpdir so
        # that a re-export never appends to an old .data file.
        data = model.name + ".onnx.data"
        onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=True, location=data)
    else:
        onnx.save_model(m, path)
    onnx.checker.check_model(path)
    return path, data


def ort_check(model, net, path, args):
    import onnxruntime as ort
    import torch

    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    worst_cos, worst_rel = 1.0, 0.0
    for i in range(args.checks):
        x = random_input(model, 2, 100 + i)
        with torch.no_grad():
            want = net(x).numpy()
        got = sess.run(["embedding"], {"input": x.numpy()})[0]
        if got.shape != (2, model.dim):
            raise ExportError("%s: ONNX Runtime output %s, want (2, %d)" % (model.name, got.shape, model.dim))
        c, r = compare(want, got)
        worst_cos, worst_rel = min(worst_cos, c), max(worst_rel, r)
    log("%s: ONNX Runtime vs PyTorch over %d batches: worst cosine %.9f, worst max relative difference %.2e" % (
        model.name, args.checks, worst_cos, worst_rel))
    if worst_cos < COS_MIN or worst_rel > REL_MAX:
        raise ExportError("%s: ONNX Runtime disagrees with PyTorch (cosine %.9f < %g or relative difference %.2e > %g)" % (
            model.name, worst_cos, COS_MIN, worst_rel, REL_MAX))
    return worst_cos, worst_rel


def install(tmp_path, data, out):
    """Move the checked files into out (data first, the .onnx last) and write the checksums."""
    name = os.path.basename(tmp_path)
    sums = {}
    if data:
        os.replace(os.path.join(os.path.dirname(tmp_path), data), os.path.join(out, data))
        sums[data] = sha256(os.path.join(out, data))
    dst = os.path.join(out, name)
    os.replace(tmp_path, dst)
    sums[name] = sha256(dst)
    for f, s in sums.items():
        tmp = os.path.join(out, f + ".sha256.tmp")
        with open(tmp, "w") as fh:
            fh.write("%s  %s\n" % (s, f))
        os.replace(tmp, os.path.join(out, f + ".sha256"))
    return sums


def export_one(name, args):
    import torch

    t0 = time.time()
    model, net = load_model(name, args)
    os.makedirs(args.out, exist_ok=True)
    tmpdir = tempfile.mkdtemp(prefix=".export-%s-" % name, dir=args.out)
    try:
        with torch.no_grad():
            path, data = onnx_export(model, net, tmpdir)
        cos, rel = ort_check(model, net, path, args)
        sums = install(path, data, args.out)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    secs = time.time() - t0
    size = sum(os.path.getsize(os.path.join(args.out, f)) for f in sums)
    log("%s: exported in %.1f s, %.1f MB, sha256 %s" % (name, secs, size / 1e6, sums[name + ".onnx"]))
    return {"name": name, "onnx": name + ".onnx", "sha256": sums[name + ".onnx"],
            "external_data": data, "external_data_sha256": sums.get(data), "embedding_dim": model.dim,
            "export_seconds": round(secs, 1), "bytes": size, "worst_cosine": cos, "worst_rel_diff": rel}


def write_models_file(results, args):
    """<out>/models.yaml: configs/models.yaml's entries of the exported models, with their
    checksums; entries of models exported earlier into the same directory are kept."""
    import yaml

    with open(os.path.join(REPO, "configs", "models.yaml")) as f:
        conf = yaml.safe_load(f)
    base = {m["name"]: m for m in conf["models"]}
    path = os.path.join(args.out, "models.yaml")
    have = {}
    if os.path.exists(path):
        with open(path) as f:
            have = {m["name"]: m for m in (yaml.safe_load(f) or {}).get("models") or []}
    for r in results:
        e = dict(base[r["name"]])
        if e["embedding_dim"] != r["embedding_dim"]:
            raise ExportError("%s: configs/models.yaml says embedding_dim %d, the graph has %d" % (
                r["name"], e["embedding_dim"], r["embedding_dim"]))
        e["onnx"], e["sha256"] = r["onnx"], r["sha256"]
        if r["external_data"]:
            e["external_data"], e["external_data_sha256"] = r["external_data"], r["external_data_sha256"]
        have[r["name"]] = e
    order = [m.name for m in MODELS]
    what = ("RANDOM weights (seed %d) in each published checkpoint layout: for testing the export and the "
            "runtime, not for embeddings" % args.random_weights) if args.random_weights is not None else "published weights"
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("# Written by scripts/export_models.py: %s.\n" % what)
        obtain = ("make models-random (scripts/export_models.py --random-weights %d --out DIR)" % args.random_weights
                  if args.random_weights is not None else conf["obtain"])
        yaml.safe_dump({"obtain": obtain, "models": [have[n] for n in order if n in have]}, f,
                       sort_keys=False, allow_unicode=True, width=1000)
    os.replace(tmp, path)
    log("wrote %s" % path)


def reference(args, names):
    """PyTorch embeddings of DIR/<model>.npy inputs, from the same checkpoints as the export."""
    import numpy as np
    import torch

    failed = []
    for name in names:
        src = os.path.join(args.reference_inputs, name + ".npy")
        if not os.path.exists(src):
            continue
        try:
            _, net = load_model(name, args)
            x = torch.from_numpy(np.load(src))
            with torch.no_grad():
                y = net(x).numpy().astype(np.float32)
            dst = os.path.join(args.reference_inputs, name + ".torch.npy")
            np.save(dst + ".tmp.npy", y)
            os.replace(dst + ".tmp.npy", dst)
            log("%s: PyTorch embeddings %s -> %s" % (name, tuple(x.shape), dst))
        except Exception as e:  # one model's failure must not hide the others'
            log("FAILED %s: %s: %s" % (name, type(e).__name__, e))
            failed.append(name)
    return 1 if failed else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="weights", help="output directory (default weights)")
    ap.add_argument("--weights-dir", default=os.path.expanduser("~/connectome-weights"), help="download cache for the published weights")
    ap.add_argument("--random-weights", type=int, metavar="SEED", help="random weights in the published layouts instead of downloads")
    ap.add_argument("--models", default=",".join(m.name for m in MODELS), help="comma-separated subset (default: all 9)")
    ap.add_argument("--threads", type=int, default=0, help="PyTorch and ONNX Runtime CPU threads (0: library default)")
    ap.add_argument("--checks", type=int, default=2, help="random batches of 2 compared between ONNX Runtime and PyTorch")
    ap.add_argument("--reference-inputs", metavar="DIR", help="write PyTorch embeddings of DIR/<model>.npy; export nothing")
    ap.add_argument("--report", metavar="FILE", help="also write per-model export figures (seconds, bytes, agreement) as JSON")
    args = ap.parse_args(argv)
    names = [m for m in args.models.split(",") if m]
    bad = [m for m in names if m not in BY_NAME]
    if bad:
        ap.error("unknown models %s (have %s)" % (bad, ", ".join(BY_NAME)))

    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.reference_inputs:
        return reference(args, names)
    results, failed = [], []
    for name in names:
        try:
            results.append(export_one(name, args))
        except Exception as e:  # noqa: BLE001  one model's failure must not stop the others
            log("FAILED %s: %s: %s" % (name, type(e).__name__, e))
            failed.append(name)
    if results:
        write_models_file(results, args)
    if args.report:
        with open(args.report, "w") as f:
            json.dump({"torch": torch.__version__, "models": results, "failed": failed}, f, indent=1)
    for r in results:
        print("%-10s %8.1f s %10.1f MB  cosine %.9f  rel %.2e  sha256 %s" % (
            r["name"], r["export_seconds"], r["bytes"] / 1e6, r["worst_cosine"], r["worst_rel_diff"], r["sha256"][:16]))
    if failed:
        log("failed: %s" % ", ".join(failed))
        return 1
    log("all %d exported into %s" % (len(results), args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
