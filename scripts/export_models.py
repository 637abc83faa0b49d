#!/usr/bin/env python3
"""Export the 9 published tumour encoders of the connectome to ONNX.

Runs on a GPU VM with internet access (the weights are on Hugging Face, Zenodo and NVIDIA's
download site; none of that is reachable from the build machines). For each model it:

  1. builds the network exactly as TumorImagingBench uses it (preprocessing-spec §3),
  2. loads the published weights and FAILS when a weight key is missing or unexpected (every
     key that is dropped on purpose, such as a decoder, is listed per model below),
  3. applies the export fixes of preprocessing-spec §3.1 (ContBatchNorm3d -> InstanceNorm3d for
     ModelsGen and SuPreM, Merlin's image branch without gradient checkpointing or an ImageNet
     download, CT-CLIP's encoded-token path on the model's device, Voco at opset 17 with
     external data),
  4. exports at the static spatial input shape (N, 1, R0, R1, R2) with opset 17; the batch axis
     is symbolic unless --static-batch is given, so the Go runner's fixed batch size (the
     models file's batch_size) is a run-time choice,
  5. checks ONNX Runtime against PyTorch on random inputs (cosine >= 0.9999 per row), and
  6. writes <out>/<name>.onnx (+ <name>.onnx.data for external data), <name>.onnx.sha256, and
     prints the models.yaml entry to paste.

Usage (see scripts/requirements-export.txt for the pinned environment):
  python3 scripts/export_models.py --out weights --weights-dir ~/weights \\
      --tib ~/src/TumorImagingBench [--models CTFM,FMCIB] [--device cuda] [--static-batch]

--tib is a checkout of TumorImagingBench (github.com/AIM-Harvard/TumorImagingBench, the
snapshot the spec was written from is deepakri201/TumorImagingBench@0b84033): its PASTA
Generic_UNet and SuPreM UNet3D files are loaded from there by path.
"""

import argparse
import hashlib
import importlib.util
import json
import os
import sys
import time

MODELS = ["CTClipVit", "CTFM", "FMCIB", "Merlin", "ModelsGen", "PASTA", "SUPREME", "VISTA3D", "Voco"]

# name -> (input shape after the batch axis, embedding dim, models.yaml batch size)
SHAPES = {
    "CTClipVit": ((1, 60, 60, 60), 512, 1),
    "CTFM": ((1, 48, 48, 48), 512, 8),
    "FMCIB": ((1, 48, 48, 48), 4096, 8),
    "Merlin": ((1, 48, 48, 48), 512, 8),
    "ModelsGen": ((1, 48, 48, 48), 4096, 8),
    "PASTA": ((1, 48, 48, 48), 1024, 8),
    "SUPREME": ((1, 48, 48, 48), 512, 8),
    "VISTA3D": ((1, 48, 48, 48), 768, 8),
    "Voco": ((1, 64, 64, 64), 3072, 4),
}

# Input value range after ScaleIntensityRanged (the clamp of each model).
RANGES = {"CTClipVit": (-1.0, 1.0)}

# Where each model's weights come from (downloaded into --weights-dir when absent).
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


class ExportError(Exception):
    pass


def log(*a):
    print("export_models:", *a, file=sys.stderr, flush=True)


def fetch_weights(name, weights_dir):
    kind, repo, fname = WEIGHTS[name]
    local = os.path.join(weights_dir, name, os.path.basename(fname))
    if os.path.exists(local):
        return local
    os.makedirs(os.path.dirname(local), exist_ok=True)
    if kind in ("hf", "hf-dataset"):
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(repo_id=repo, filename=fname, repo_type="dataset" if kind == "hf-dataset" else None,
                               local_dir=os.path.join(weights_dir, name))
        return path
    import urllib.request

    log("download", repo)
    tmp = local + ".part"
    urllib.request.urlretrieve(repo, tmp)
    os.replace(tmp, local)
    return local


def torch_load(path):
    import torch

    # weights_only=False: several checkpoints hold plain Python containers besides tensors.
    return torch.load(path, map_location="cpu", weights_only=False)


def load_checked(module, state, name, drop_prefixes=(), drop_keys=()):
    """Load state into module strictly. Keys starting with drop_prefixes (or in drop_keys) are
    removed first, on purpose and loudly; anything else missing or unexpected is an error."""
    dropped = [k for k in state if k.startswith(tuple(drop_prefixes)) or k in drop_keys]
    state = {k: v for k, v in state.items() if k not in set(dropped)}
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or shape:
        raise ExportError(
            "%s: weights do not match the network: %d missing %s, %d unexpected %s, %d shape mismatches %s"
            % (name, len(missing), missing[:8], len(unexpected), unexpected[:8], len(shape), shape[:8]))
    module.load_state_dict(state, strict=True)
    log("%s: loaded %d tensors strictly (%d dropped on purpose: %s)" % (
        name, len(state), len(dropped), sorted({k.split(".")[0] for k in dropped})))


def strip(state, prefix):
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}


def load_file_module(path, modname):
    if not os.path.exists(path):
        raise ExportError("missing %s (is --tib a TumorImagingBench checkout?)" % path)
    spec = importlib.util.spec_from_file_location(modname, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    spec.loader.exec_module(mod)
    return mod


def contbn_to_instancenorm(module):
    """Replace every ContBatchNorm3d (batch statistics even in eval) by InstanceNorm3d with the
    same affine parameters: equal at batch 1, and independent of batch composition after."""
    import torch

    n = 0
    for parent in module.modules():
        for cname, child in list(parent.named_children()):
            if type(child).__name__ == "ContBatchNorm3d":
                inorm = torch.nn.InstanceNorm3d(child.num_features, eps=child.eps, affine=True, track_running_stats=False)
                with torch.no_grad():
                    inorm.weight.copy_(child.weight)
                    inorm.bias.copy_(child.bias)
                setattr(parent, cname, inorm)
                n += 1
    if n == 0:
        raise ExportError("no ContBatchNorm3d found to replace")
    log("replaced %d ContBatchNorm3d with InstanceNorm3d" % n)


def gap(x):
    import torch

    return torch.nn.functional.adaptive_avg_pool3d(x, 1).flatten(start_dim=1)


def last_level_gap(enc):
    """Wraps a SegResEncoder-style encoder (a list of levels) with global average pooling of
    its last level: the head CT-FM and VISTA3D use."""
    import torch

    class LastLevelGAP(torch.nn.Module):
        def __init__(self, enc):
            super().__init__()
            self.enc = enc

        def forward(self, x):
            return gap(self.enc(x)[-1])

    return LastLevelGAP(enc)


# ---- builders: each returns a torch.nn.Module mapping (N,1,R0,R1,R2) -> (N, dim) ----

def build_ctclip(w, args):
    import torch
    from transformer_maskgit import CTViT

    vit = CTViT(dim=512, codebook_size=8192, image_size=60, patch_size=20, temporal_patch_size=10,
                spatial_depth=4, temporal_depth=4, dim_head=32, heads=8)
    ckpt = torch_load(w)
    state = {k[len("visual_transformer."):]: v for k, v in ckpt.items() if k.startswith("visual_transformer.")}
    if not state:
        raise ExportError("CTClipVit: no visual_transformer.* keys in %s" % w)
    # The text transformer and projection heads of CT-CLIP are not part of the image encoder.
    load_checked(vit, state, "CTClipVit")

    class Head(torch.nn.Module):
        def __init__(self, vit):
            super().__init__()
            self.vit = vit

        def forward(self, x):
            # Encoded-token path only (no decoder, VGG or discriminator): tokens after the VQ,
            # (b, t, h, w, d) -> NCDHW -> global average = mean of codebook vectors.
            tok = self.vit(x, return_encoded_tokens=True)
            return gap(tok.permute(0, 4, 1, 2, 3))

    return Head(vit)


def build_ctfm(w, args):
    import torch
    from monai.networks.nets.segresnet_ds import SegResEncoder

    enc = SegResEncoder(blocks_down=(1, 2, 2, 4, 4))
    state = torch_load(w)
    if "state_dict" in state:
        state = state["state_dict"]
    enc_state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    if not enc_state:
        raise ExportError("CTFM: no encoder.* keys")
    load_checked(enc, enc_state, "CTFM")
    log("CTFM: %d non-encoder keys (decoder and heads) not used" % (len(state) - len(enc_state)))

    return last_level_gap(enc)


def build_fmcib(w, args):
    import torch
    from monai.networks.nets import resnet50

    net = resnet50(pretrained=False, n_input_channels=1, widen_factor=2, conv1_t_stride=2,
                   feed_forward=False, bias_downsample=True)
    ckpt = torch_load(w)
    state = ckpt.get("trunk_state_dict") or ckpt.get("state_dict") or ckpt
    for p in ("trunk.", "module."):
        state = strip(state, p)
    # Self-supervised projection heads are not part of the trunk.
    load_checked(net, state, "FMCIB", drop_prefixes=("heads.", "head."))
    return net


def build_merlin(w, args):
    import torch
    import torch.utils.checkpoint
    import torchvision

    # No ImageNet download: the Merlin checkpoint overwrites every weight of the image branch.
    real_resnet152 = torchvision.models.resnet152
    torchvision.models.resnet152 = lambda *a, **k: real_resnet152(weights=None)
    # No gradient checkpointing wrapper around the ResNet stages (it does not export).
    torch.utils.checkpoint.checkpoint = lambda f, *a, **k: f(*a)
    from merlin.models import i3res  # noqa: F401  (after the patch: it binds checkpoint at import)
    from merlin.models.build import ImageEncoder

    i3res.checkpoint.checkpoint = lambda f, *a, **k: f(*a)
    enc = ImageEncoder()
    state = torch_load(w)
    if "state_dict" in state:
        state = state["state_dict"]
    img = {k[len("encode_image."):]: v for k, v in state.items() if k.startswith("encode_image.")}
    other = sorted({k.split(".")[0] for k in state if not k.startswith("encode_image.")})
    if other and set(other) - {"encode_text", "logit_scale"}:
        raise ExportError("Merlin: unexpected top-level keys %s" % other)
    load_checked(enc, img, "Merlin")

    class Head(torch.nn.Module):
        def __init__(self, res):
            super().__init__()
            self.res = res

        def forward(self, x):
            contrastive = self.res(x)[0]  # (x_contrastive, x_ehr): outputs[0]
            return torch.nn.functional.normalize(contrastive, dim=-1)

    return Head(enc.i3_resnet)


def unet3d_encoder(unet, head):
    import torch

    class Enc(torch.nn.Module):
        def __init__(self, u):
            super().__init__()
            self.down_tr64, self.down_tr128 = u.down_tr64, u.down_tr128
            self.down_tr256, self.down_tr512 = u.down_tr256, u.down_tr512

        def forward(self, x):
            x, _ = self.down_tr64(x)
            x, _ = self.down_tr128(x)
            x, _ = self.down_tr256(x)
            x, _ = self.down_tr512(x)
            return head(x)

    return Enc(unet)


def build_modelsgen(w, args):
    import torch

    unet = load_file_module(os.path.join(args.tib, "src/tumorimagingbench/models/unet3d.py"), "tib_unet3d").UNet3D(n_class=1)
    pool = torch.nn.AvgPool3d(3, stride=2)
    enc = unet3d_encoder(unet, lambda x: pool(x).flatten(start_dim=1))  # (512, 2³) channel-major
    state = strip(torch_load(w)["state_dict"], "module.")
    # Encoder only: the decoder (up_tr*) and output layer (out_tr) are dropped on purpose.
    load_checked(enc, state, "ModelsGen", drop_prefixes=("up_tr", "out_tr"))
    contbn_to_instancenorm(enc)
    return enc


def build_suprem(w, args):
    unet = load_file_module(os.path.join(args.tib, "src/tumorimagingbench/models/unet3d.py"), "tib_unet3d").UNet3D(n_class=1)
    enc = unet3d_encoder(unet, gap)
    ckpt = torch_load(w)["net"]
    state = {".".join(k.split(".")[2:]): v for k, v in ckpt.items()}  # drop e.g. module.backbone.
    # Encoder only: the decoder (up_tr*) and segmentation output (out_tr) are dropped on purpose.
    load_checked(enc, state, "SUPREME", drop_prefixes=("up_tr", "out_tr"))
    contbn_to_instancenorm(enc)
    return enc


def build_pasta(w, args):
    mod = load_file_module(os.path.join(args.tib, "src/tumorimagingbench/models/PASTA/pasta_unet.py"), "tib_pasta_unet")
    net = mod.Generic_UNet(input_channels=1)
    state = strip(torch_load(w), "module.")
    own = net.state_dict()
    # The published checkpoint also holds decoder and segmentation-output layers that the
    # encoder-only Generic_UNet of TumorImagingBench does not have.
    extra = sorted({k.split(".")[0] for k in state if k not in own})
    log("PASTA: dropping checkpoint groups not in the encoder: %s" % extra)
    load_checked(net, state, "PASTA", drop_keys=[k for k in state if k not in own])

    import torch

    class Head(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return gap(self.net(x))

    return Head(net)


def build_vista3d(w, args):
    import torch
    from monai.networks.nets.segresnet_ds import SegResEncoder

    enc = SegResEncoder(spatial_dims=3, in_channels=1, init_filters=48, blocks_down=[1, 2, 2, 4, 4], norm="instance")
    state = torch_load(w)
    if "state_dict" in state:
        state = state["state_dict"]
    pre = "image_encoder.encoder."
    enc_state = {k[len(pre):]: v for k, v in state.items() if k.startswith(pre)}
    if not enc_state:
        raise ExportError("VISTA3D: no %s* keys" % pre)
    load_checked(enc, enc_state, "VISTA3D")

    return last_level_gap(enc)


def build_voco(w, args):
    import torch
    from monai.networks.nets import SwinUNETR

    net = SwinUNETR(in_channels=1, out_channels=2, feature_size=192, use_v2=True)  # MONAI >= 1.5
    ckpt = torch_load(w)
    if "state_dict" in ckpt:
        ckpt = ckpt["state_dict"]
    swin = net.swinViT.state_dict()
    state = {}
    for k, v in ckpt.items():
        for p in ("module.", "backbone."):
            if k.startswith(p):
                k = k[len(p):]
        if k.startswith("swinViT."):
            state[k[len("swinViT."):]] = v
    copied = [k for k in swin if k in state and tuple(state[k].shape) == tuple(swin[k].shape)]
    log("Voco: %d of %d swinViT tensors match by name and shape" % (len(copied), len(swin)))
    # Every swinViT tensor must come from the checkpoint (the reference's name+shape filter would
    # silently keep random weights otherwise); the SSL heads and decoder are not used.
    load_checked(net.swinViT, state, "Voco")

    class Head(torch.nn.Module):
        def __init__(self, vit):
            super().__init__()
            self.vit = vit

        def forward(self, x):
            return gap(self.vit(x, normalize=True)[-1])  # layer-normed last hidden state

    return Head(net.swinViT)


BUILDERS = {
    "CTClipVit": build_ctclip, "CTFM": build_ctfm, "FMCIB": build_fmcib, "Merlin": build_merlin,
    "ModelsGen": build_modelsgen, "PASTA": build_pasta, "SUPREME": build_suprem,
    "VISTA3D": build_vista3d, "Voco": build_voco,
}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_one(name, args):
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch

    shape, dim, batch = SHAPES[name]
    weights = fetch_weights(name, args.weights_dir)
    log("%s: weights %s (sha256 %s)" % (name, weights, sha256(weights)))
    model = BUILDERS[name](weights, args).eval()
    device = torch.device(args.device)
    model.to(device)
    n = batch if args.static_batch else 2
    lo, hi = RANGES.get(name, (0.0, 1.0))
    gen = torch.Generator().manual_seed(0)
    dummy = (torch.rand((n,) + shape, generator=gen) * (hi - lo) + lo).to(device)
    with torch.no_grad():
        ref = model(dummy)
    if tuple(ref.shape) != (n, dim):
        raise ExportError("%s: PyTorch output %s, want (%d, %d)" % (name, tuple(ref.shape), n, dim))

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, name + ".onnx")
    tmp = path + ".tmp"
    dyn = None if args.static_batch else {"input": {0: "N"}, "embedding": {0: "N"}}
    torch.onnx.export(model, (dummy,), tmp, input_names=["input"], output_names=["embedding"],
                      opset_version=17, dynamic_axes=dyn, do_constant_folding=True)
    data_name = None
    m = onnx.load(tmp)
    if name == "Voco":
        # preprocessing-spec §3.1: external data even under the 2 GB protobuf limit.
        data_name = name + ".onnx.data"
        onnx.save_model(m, tmp, save_as_external_data=True, all_tensors_to_one_file=True, location=data_name)
    onnx.checker.check_model(tmp if data_name else m)
    os.replace(tmp, path)

    # ONNX Runtime against PyTorch on fresh random inputs.
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if args.device == "cuda" else ["CPUExecutionProvider"]
    sess = ort.InferenceSession(path, providers=providers)
    worst = 1.0
    for seed in range(args.checks):
        g = torch.Generator().manual_seed(100 + seed)
        x = torch.rand((n,) + shape, generator=g) * (hi - lo) + lo
        with torch.no_grad():
            want = model(x.to(device)).float().cpu().numpy()
        got = sess.run(["embedding"], {"input": x.numpy()})[0]
        cos = (want * got).sum(1) / (np.linalg.norm(want, axis=1) * np.linalg.norm(got, axis=1) + 1e-30)
        worst = min(worst, float(cos.min()))
    log("%s: ONNX Runtime vs PyTorch, worst cosine over %d batches: %.6f" % (name, args.checks, worst))
    if worst < 0.9999:
        raise ExportError("%s: ONNX Runtime disagrees with PyTorch (cosine %.6f < 0.9999)" % (name, worst))

    digest = sha256(path)
    with open(path + ".sha256", "w") as f:
        f.write("%s  %s\n" % (digest, os.path.basename(path)))
    if data_name:
        dd = sha256(os.path.join(args.out, data_name))
        with open(os.path.join(args.out, data_name + ".sha256"), "w") as f:
            f.write("%s  %s\n" % (dd, data_name))
        log("%s: external data %s sha256 %s" % (name, data_name, dd))
    entry = {"name": name, "onnx": os.path.basename(path), "sha256": digest}
    if data_name:
        entry["external_data"] = data_name
        entry["external_data_sha256"] = dd
    entry.update({"input": "input", "output": "embedding", "embedding_dim": dim, "batch_size": batch})
    print("  # %s, exported %s, torch %s, onnx %s, onnxruntime %s, worst cosine %.6f" % (
        name, time.strftime("%Y-%m-%d"), torch.__version__, onnx.__version__, ort.__version__, worst))
    for k, v in entry.items():
        print(("  - %s: %s" if k == "name" else "    %s: %s") % (k, json.dumps(v) if isinstance(v, str) and " " in v else v))
    sys.stdout.flush()
    return digest


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="weights", help="output directory (default weights)")
    ap.add_argument("--weights-dir", default=os.path.expanduser("~/connectome-weights"), help="download cache for the weights")
    ap.add_argument("--tib", required=True, help="TumorImagingBench checkout (for the PASTA and UNet3D network code)")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated subset (default: all 9)")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="export device (CT-CLIP needs cuda)")
    ap.add_argument("--static-batch", action="store_true", help="fix the batch axis to the models.yaml batch_size")
    ap.add_argument("--checks", type=int, default=3, help="random batches compared between ORT and PyTorch")
    args = ap.parse_args(argv)
    names = [m for m in args.models.split(",") if m]
    bad = [m for m in names if m not in BUILDERS]
    if bad:
        ap.error("unknown models %s (have %s)" % (bad, ", ".join(MODELS)))
    failed = []
    for name in names:
        try:
            export_one(name, args)
        except ExportError as e:
            log("FAILED", e)
            failed.append(name)
    if failed:
        log("failed: %s" % ", ".join(failed))
        return 1
    log("all exported; paste the entries above into configs/models.yaml (sha256 lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
