"""CT-CLIP's image encoder (CTViT, encoded-token path, with its cosine-similarity vector
quantiser), written for ONNX export.

Why our own: CT-CLIP is not on PyPI, and its CTViT does not export as published (a hard-coded
CUDA device, beartype checks on traced shapes, a layer norm over a traced shape, a zero-size
null key/value concatenation, a log over an int64 grid). This module computes the same thing
with the same operations in the same order, so that on the same weights it equals the upstream
module to 0 or 1 ulp (checked by scripts/export/ctvit_compare.py against a CT-CLIP checkout).

Parameter and buffer names are those of the published checkpoint's `visual_transformer.*` keys
(CT-CLIP_v2.pt), minus the prefix, for the parts the encoded-token path uses; the decoder-side
keys (to_pixels*, to_patch_emb_first_frame*) and the codebook's training statistics are named
in DROPPED, so that the strict loader can say why it drops them.
"""

import torch
import torch.nn.functional as F
from torch import nn

# Keys of the published CTViT that the encoded-token path never reads, and why.
DROPPED = {
    "to_pixels_first_frame.": "decoder (pixels from tokens)",
    "to_pixels.": "decoder (pixels from tokens)",
    "to_patch_emb_first_frame.": "first-frame patch embedding, unused when the whole volume is patched at once",
    "vq._codebook.cluster_size": "codebook training statistic (EMA), unused at inference",
    "vq._codebook.initted": "codebook k-means flag, unused at inference",
}


class LayerNorm(nn.Module):
    """CT-CLIP's LayerNorm: learnable gamma, fixed (buffer) beta, eps 1e-5. The normalised
    shape is the static feature size (upstream passes x.shape[-1:], which traces badly)."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim
        self.gamma = nn.Parameter(torch.ones(dim))
        self.register_buffer("beta", torch.zeros(dim))

    def forward(self, x):
        return F.layer_norm(x, (self.dim,), self.gamma, self.beta)


class GEGLU(nn.Module):
    def forward(self, x):
        x, gate = x.chunk(2, dim=-1)
        return F.gelu(gate) * x


def feed_forward(dim, mult=4):
    inner = int(mult * (2 / 3) * dim)
    return nn.Sequential(
        nn.LayerNorm(dim),
        nn.Linear(dim, inner * 2, bias=False),
        GEGLU(),
        nn.Dropout(0.0),  # index 3 keeps the published key numbering (…3 = Dropout, 4 = Linear)
        nn.Linear(inner, dim, bias=False),
    )


class PEG(nn.Module):
    """Causal position-encoding generator: depthwise 3³ conv, the frame axis padded (2, 0)."""

    def __init__(self, dim):
        super().__init__()
        self.dsconv = nn.Conv3d(dim, dim, 3, groups=dim)

    def forward(self, x, shape):
        # x: (b·t, h·w, d) or (b·h·w, t, d); shape = (b, t, h, w) of the token grid.
        orig = x.shape
        b, t, h, w = shape
        x = x.reshape(-1, t, h, w, x.shape[-1])
        x = x.permute(0, 4, 1, 2, 3)
        x = F.pad(x, (1, 1, 1, 1, 2, 0), value=0.0)
        x = self.dsconv(x)
        x = x.permute(0, 2, 3, 4, 1)
        x = x.reshape(x.shape[0], t * h * w, x.shape[-1])
        return x.reshape(orig)


class Attention(nn.Module):
    """Self-attention with l2-normalised queries and keys (scale 8), no null key/values (the
    published self-attention has num_null_kv = 0: its null_kv parameter has size 0)."""

    def __init__(self, dim, dim_head, heads):
        super().__init__()
        self.heads = heads
        self.scale = 8
        inner = dim_head * heads
        self.norm = LayerNorm(dim)
        self.context_norm = LayerNorm(dim)  # published, unused without a context
        self.null_kv = nn.Parameter(torch.zeros(heads, 0, dim_head))
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.q_scale = nn.Parameter(torch.ones(dim_head))
        self.k_scale = nn.Parameter(torch.ones(dim_head))
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x, attn_bias=None):
        # Upstream takes keys and values from the input before the norm (kv_input = x is bound
        # before x = self.norm(x)); only the queries see the normalised tokens.
        kv_input = x
        x = self.norm(x)
        q, k, v = self.to_q(x), *self.to_kv(kv_input).chunk(2, dim=-1)
        n = x.shape[1]
        q, k, v = (t.reshape(-1, n, self.heads, t.shape[-1] // self.heads).transpose(1, 2) for t in (q, k, v))
        # Upstream concatenates the (empty) null keys/values in front: a copy into contiguous
        # memory, which decides the summation order of what follows. Same copy, no empty tensor.
        k, v = k.contiguous(), v.contiguous()
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        q = q * self.q_scale
        k = k * self.k_scale
        sim = torch.einsum("b h i d, b h j d -> b h i j", q, k) * self.scale
        if attn_bias is not None:
            sim = sim + attn_bias
        attn = sim.softmax(dim=-1)
        out = torch.einsum("b h i j, b h j d -> b h i d", attn, v)
        out = out.transpose(1, 2).reshape(-1, n, out.shape[1] * out.shape[3])
        return self.to_out(out)


class Transformer(nn.Module):
    def __init__(self, dim, depth, dim_head, heads):
        super().__init__()
        # Published layout per layer: [PEG, self-attention, cross-attention (None), feed-forward].
        self.layers = nn.ModuleList(
            nn.ModuleList([PEG(dim), Attention(dim, dim_head, heads), None, feed_forward(dim)]) for _ in range(depth))
        self.norm_out = LayerNorm(dim)

    def forward(self, x, video_shape, attn_bias=None):
        for peg, attn, _, ff in self.layers:
            x = peg(x, video_shape) + x
            x = attn(x, attn_bias=attn_bias) + x
            x = ff(x) + x
        return self.norm_out(x)


class ContinuousPositionBias(nn.Module):
    """Relative position bias over the h×w token grid from a small MLP on sign·log(1+|Δ|)."""

    def __init__(self, dim, heads, layers=2):
        super().__init__()
        self.net = nn.ModuleList([nn.Sequential(nn.Linear(2, dim), nn.LeakyReLU(0.1))])
        for _ in range(layers - 1):
            self.net.append(nn.Sequential(nn.Linear(dim, dim), nn.LeakyReLU(0.1)))
        self.net.append(nn.Linear(dim, heads))

    @staticmethod
    def rel_pos(h, w):
        # Built in Python from the static grid, so the graph holds a constant: upstream takes
        # torch.log of an int64 tensor, which ONNX Runtime has no kernel for. The values are the
        # same float32 numbers (torch.log of an integer tensor computes in float32).
        grid = [(i, j) for i in range(h) for j in range(w)]
        rel = [[[a - c, b - d] for (c, d) in grid] for (a, b) in grid]
        t = torch.tensor(rel, dtype=torch.float32)
        return torch.sign(t) * torch.log(t.abs() + 1)

    def forward(self, h, w):
        rel = self.rel_pos(h, w)
        for layer in self.net:
            rel = layer(rel)
        return rel.permute(2, 0, 1)


class CosineCodebook(nn.Module):
    """vector-quantize-pytorch 1.1.2's CosineSimCodebook at inference: the nearest code by cosine
    similarity, returned as the stored (not re-normalised) code vector."""

    def __init__(self, dim, codebook_size):
        super().__init__()
        self.register_buffer("embed", torch.zeros(1, codebook_size, dim))

    def forward(self, x):
        # x: (b, n, d). Upstream flattens to (1, b·n, d); the dot products are the same rows.
        flat = F.normalize(x.reshape(1, -1, x.shape[-1]), p=2, dim=-1)
        embed = F.normalize(self.embed, p=2, dim=-1)
        dist = torch.einsum("h n d, h c d -> h n c", flat, embed)
        ind = dist.argmax(dim=-1)
        return self.embed[0][ind[0]].reshape(x.shape)


class VectorQuantize(nn.Module):
    def __init__(self, dim, codebook_size):
        super().__init__()
        self._codebook = CosineCodebook(dim, codebook_size)

    def forward(self, x):
        return self._codebook(x)


class CTViTEncoder(nn.Module):
    """CTViT(dim 512, codebook 8192, image 60, patch 20, temporal patch 10, 4 + 4 layers,
    8 heads × 32) as TumorImagingBench builds it, forward(x, return_encoded_tokens=True):
    (b, 1, 60, 60, 60) -> quantised tokens (b, 6, 3, 3, 512)."""

    def __init__(self, dim=512, codebook_size=8192, image_size=60, patch_size=20, temporal_patch_size=10,
                 spatial_depth=4, temporal_depth=4, dim_head=32, heads=8):
        super().__init__()
        self.dim = dim
        self.image_size = image_size
        self.patch = patch_size
        self.tpatch = temporal_patch_size
        self.spatial_rel_pos_bias = ContinuousPositionBias(dim=dim, heads=heads)
        pdim = patch_size * patch_size * temporal_patch_size
        self.to_patch_emb = nn.Sequential(
            nn.Identity(),  # index 0: the einops Rearrange of the published module (no weights)
            nn.LayerNorm(pdim),
            nn.Linear(pdim, dim),
            nn.LayerNorm(dim),
        )
        self.enc_spatial_transformer = Transformer(dim, spatial_depth, dim_head, heads)
        self.enc_temporal_transformer = Transformer(dim, temporal_depth, dim_head, heads)
        self.vq = VectorQuantize(dim, codebook_size)

    def patchify(self, video):
        # 'b c (t pt) (h p1) (w p2) -> b t h w (c pt p1 p2)' with c = 1.
        t, h, w = (s // p for s, p in zip(video.shape[2:], (self.tpatch, self.patch, self.patch)))
        x = video.reshape(-1, 1, t, self.tpatch, h, self.patch, w, self.patch)
        x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)
        return x.reshape(-1, t, h, w, self.tpatch * self.patch * self.patch)

    def forward(self, video):
        tokens = self.to_patch_emb[1:](self.patchify(video))
        _, t, h, w, d = tokens.shape
        shape = (-1, t, h, w)
        # spatial: (b·t, h·w, d) with the continuous position bias
        x = tokens.reshape(-1, h * w, d)
        x = self.enc_spatial_transformer(x, shape, attn_bias=self.spatial_rel_pos_bias(h, w))
        # temporal: (b·h·w, t, d)
        x = x.reshape(-1, t, h, w, d).permute(0, 2, 3, 1, 4).reshape(-1, t, d)
        x = self.enc_temporal_transformer(x, shape)
        x = x.reshape(-1, h, w, t, d).permute(0, 3, 1, 2, 4)
        q = self.vq(x.reshape(-1, t * h * w, d))
        return q.reshape(-1, t, h, w, d)


def published_config():
    """The CTViT arguments of TumorImagingBench's ct_clip_vit.py (preprocessing-spec §3)."""
    return dict(dim=512, codebook_size=8192, image_size=60, patch_size=20, temporal_patch_size=10,
                spatial_depth=4, temporal_depth=4, dim_head=32, heads=8)

