"""Helpers shared by the model builders: logging, the strict checkpoint loader, checksums, the
ContBatchNorm3d swap and the pooling heads."""

import hashlib
import os
import sys

import torch


class ExportError(Exception):
    """A model that cannot be exported as asked (the run goes on with the next model)."""


def log(*a):
    print("export_models:", *a, file=sys.stderr, flush=True)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def torch_load(path):
    # weights_only=False: several published checkpoints hold plain Python containers (and
    # FMCIB's Lighter format its hyper-parameters) besides the tensors.
    return torch.load(path, map_location="cpu", weights_only=False)


class KeyMap:
    """How a published checkpoint's keys map onto the module that is exported.

    rules: (prefix, action) pairs, the first match wins. action is a str (the key minus the
    prefix gets that str prepended: "" strips the prefix) to keep the tensor, or
    ("drop", reason) to drop it on purpose. A key no rule matches is kept as it is."""

    def __init__(self, *rules):
        self.rules = rules

    def map(self, key):
        for prefix, action in self.rules:
            if key.startswith(prefix):
                if isinstance(action, tuple):
                    return None, action[1]
                return action + key[len(prefix):], None
        return key, None


def load_strict(module, state, keymap, name):
    """Load a published state dict into module through keymap. Every tensor of the module must
    come from the checkpoint with the same shape, and every checkpoint key must be either used
    or dropped by a named rule; anything else is an ExportError. Logs what was dropped and why."""
    own = module.state_dict()
    kept, dropped = {}, {}
    for k, v in state.items():
        new, reason = keymap.map(k)
        if new is None:
            dropped.setdefault(reason, []).append(k)
            continue
        if new in kept:
            raise ExportError("%s: two checkpoint keys map to %s" % (name, new))
        kept[new] = v
    missing = sorted(set(own) - set(kept))
    unexpected = sorted(set(kept) - set(own))
    shape = sorted(k for k in set(own) & set(kept) if tuple(own[k].shape) != tuple(kept[k].shape))
    if missing or unexpected or shape:
        raise ExportError(
            "%s: checkpoint does not match the network: %d missing %s, %d unexpected %s, %d shape mismatches %s"
            % (name, len(missing), missing[:6], len(unexpected), unexpected[:6], len(shape),
               [(k, tuple(kept[k].shape), tuple(own[k].shape)) for k in shape[:6]]))
    module.load_state_dict({k: v.contiguous() for k, v in kept.items()}, strict=True)
    log("%s: loaded %d tensors strictly" % (name, len(kept)))
    for reason, keys in sorted(dropped.items()):
        groups = sorted({".".join(k.split(".")[:2]) for k in keys})
        log("%s: dropped %d keys (%s): %s%s" % (name, len(keys), reason, ", ".join(groups[:8]),
                                                 " …" if len(groups) > 8 else ""))
    return {r: len(k) for r, k in dropped.items()}


def contbn_to_instancenorm(module):
    """Replace every ContBatchNorm3d (batch statistics even in eval) by InstanceNorm3d with the
    same affine parameters: equal at batch 1 (the reference's batch), and independent of how
    the runner batches lesions."""
    n = 0
    for parent in list(module.modules()):
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
    """Global average pool of (N, C, D, H, W) to (N, C): TumorImagingBench's
    adaptive_avg_pool3d(x, 1).flatten(start_dim=1)."""
    return torch.nn.functional.adaptive_avg_pool3d(x, 1).flatten(start_dim=1)


class Embedder(torch.nn.Module):
    """The exported graph: body(x) -> (N, dim), with the embedding dimension fixed in the graph
    (a Reshape to (-1, dim) with a constant shape, so shape inference gives a static dim)."""

    def __init__(self, body, dim):
        super().__init__()
        self.body = body
        self.dim = dim

    def forward(self, x):
        return self.body(x).reshape(-1, self.dim)


def package_file(package, relpath):
    """Path of a file inside an installed package, without importing the package (fmcib's
    __init__ imports wget, loguru and its dataset code, none of which the network needs)."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ExportError("package %s is not installed (scripts/requirements-export.txt)" % package)
    path = os.path.join(list(spec.submodule_search_locations)[0], relpath)
    if not os.path.exists(path):
        raise ExportError("%s has no %s" % (package, relpath))
    return path


def load_module_file(path, modname):
    import importlib.util

    spec = importlib.util.spec_from_file_location(modname, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    spec.loader.exec_module(mod)
    return mod
