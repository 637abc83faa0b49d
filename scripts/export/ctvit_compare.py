#!/usr/bin/env python3
"""Compare our CTViT encoder (scripts/export/ctvit.py) with the upstream CT-CLIP CTViT, on the
same random weights and random inputs, in ulp of float32.

Usage: python3 scripts/export/ctvit_compare.py CT-CLIP-CHECKOUT [--seeds 3] [--batch 2]
(make ctvit-compare CTCLIP=path; the checkout is used where it is, nothing is copied.)

The upstream module is imported from CHECKOUT/transformer_maskgit/transformer_maskgit (ctvit.py and
attention.py only: the package __init__ pulls its trainer and datasets). It hard-codes
torch.device('cuda'); on a machine without CUDA those two modules see a torch whose device()
answers 'cpu', which changes where tensors live and nothing else. Upstream needs
vector-quantize-pytorch 1.1.2, einops and beartype (scripts/requirements-ctvit-compare.txt).

Checked: (1) the upstream state dict's keys are ours plus exactly ctvit.DROPPED; (2) per seed, the
upstream CTViT (return_encoded_tokens=True) with random weights, and ours with the same tensors
loaded strictly, give quantised tokens and TumorImagingBench's pooled embedding within --max-ulp;
(3) the pre-quantisation tokens too (the quantiser's argmax would hide a small difference).
Exit status 1 on any mismatch.
"""

import argparse
import importlib
import os
import sys
import types

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from export import ctvit  # noqa: E402
from export.models import randomize  # noqa: E402


class _CPUTorch(types.ModuleType):
    """torch, except that torch.device(...) is the CPU (upstream hard-codes 'cuda')."""

    def __init__(self):
        super().__init__("torch")

    def __getattr__(self, name):
        if name == "device":
            return lambda *a, **k: torch.device("cpu")
        return getattr(torch, name)


def upstream_ctvit(checkout):
    pkg_dir = os.path.join(checkout, "transformer_maskgit", "transformer_maskgit")
    if not os.path.exists(os.path.join(pkg_dir, "ctvit.py")):
        raise SystemExit("no transformer_maskgit/transformer_maskgit/ctvit.py under %s (a CT-CLIP checkout?)" % checkout)
    pkg = types.ModuleType("transformer_maskgit")
    pkg.__path__ = [pkg_dir]
    sys.modules["transformer_maskgit"] = pkg
    attention = importlib.import_module("transformer_maskgit.attention")
    mod = importlib.import_module("transformer_maskgit.ctvit")
    if not torch.cuda.is_available():
        attention.torch = _CPUTorch()
        mod.torch = _CPUTorch()
    return mod.CTViT


def ulp_diff(a, b):
    """Largest distance in float32 ulp between two arrays of the same shape."""
    a = np.ascontiguousarray(a, dtype=np.float32).view(np.int32).astype(np.int64)
    b = np.ascontiguousarray(b, dtype=np.float32).view(np.int32).astype(np.int64)
    # map the sign-magnitude float order onto a monotone integer line
    a = np.where(a < 0, np.int64(-(2 ** 31)) - a, a)
    b = np.where(b < 0, np.int64(-(2 ** 31)) - b, b)
    return int(np.abs(a - b).max()) if a.size else 0


def pooled(tokens):
    return torch.nn.functional.adaptive_avg_pool3d(tokens.permute(0, 4, 1, 2, 3), 1).flatten(start_dim=1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkout", help="a CT-CLIP checkout (github.com/ibrahimethemhamamci/CT-CLIP)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--max-ulp", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))

    CTViT = upstream_ctvit(args.checkout)
    cfg = ctvit.published_config()
    up = CTViT(**cfg).eval()
    ours = ctvit.CTViTEncoder(**cfg).eval()
    up_keys, our_keys = set(up.state_dict()), set(ours.state_dict())
    extra = sorted(up_keys - our_keys)
    not_dropped = [k for k in extra if not k.startswith(tuple(ctvit.DROPPED))]
    missing = sorted(our_keys - up_keys)
    print("state dict: upstream %d keys, ours %d; upstream-only %d (all in DROPPED: %s); ours-only %d" % (
        len(up_keys), len(our_keys), len(extra), not not_dropped, len(missing)))
    bad = bool(not_dropped or missing)
    for k in not_dropped + missing:
        print("  key mismatch:", k)

    worst = {"pre-VQ tokens": 0, "quantised tokens": 0, "pooled embedding": 0}
    codes_differ = 0
    for seed in range(args.seeds):
        randomize(up, 1000 + seed)
        ours.load_state_dict({k: v for k, v in up.state_dict().items() if k in our_keys}, strict=True)
        g = torch.Generator().manual_seed(seed)
        x = torch.rand((args.batch,) + (1, 60, 60, 60), generator=g) * 2 - 1
        with torch.no_grad():
            # pre-quantisation tokens: both modules' encode paths, read at the quantiser's input
            captured = {}
            h1 = up.vq.register_forward_hook(lambda m, i, o: captured.__setitem__("up", i[0]))
            h2 = ours.vq.register_forward_hook(lambda m, i, o: captured.__setitem__("ours", i[0]))
            t_up = up(x, return_encoded_tokens=True)
            t_ours = ours(x)
            h1.remove()
            h2.remove()
        d = {
            "pre-VQ tokens": ulp_diff(captured["up"].numpy(), captured["ours"].numpy()),
            "quantised tokens": ulp_diff(t_up.numpy(), t_ours.numpy()),
            "pooled embedding": ulp_diff(pooled(t_up).numpy(), pooled(t_ours).numpy()),
        }
        same_codes = bool(torch.equal(t_up, t_ours))
        codes_differ += not same_codes
        print("seed %d: input %s, tokens %s; max ulp: %s; quantised tokens identical: %s" % (
            seed, tuple(x.shape), tuple(t_up.shape), ", ".join("%s %d" % kv for kv in d.items()), same_codes))
        for k, v in d.items():
            worst[k] = max(worst[k], v)
    print("worst over %d seeds: %s" % (args.seeds, ", ".join("%s %d ulp" % kv for kv in worst.items())))
    if bad or any(v > args.max_ulp for v in worst.values()):
        print("FAIL: ours differs from upstream CTViT by more than %d ulp" % args.max_ulp)
        return 1
    print("OK: ours equals upstream CTViT within %d ulp" % args.max_ulp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
