"""The 9 encoders: how each is built from its published code, how its published checkpoint maps
onto the exported module, its pooling head, and the key layout of its published checkpoint (for
--random-weights). Architecture, pooling, input size and axis order follow TumorImagingBench
(../shared/docs/preprocessing-spec.md §3).

Each Model has:
  encoder()          the module the checkpoint is loaded into, built from the upstream package
  unwrap(ckpt)       the checkpoint object -> a flat {key: tensor} in the published naming
  keymap             published key -> encoder key, or a named reason to drop it (strict otherwise)
  body(encoder)      encoder + TumorImagingBench's head -> (N, dim)
  layouts(state)     the published checkpoint object(s) holding state, for --random-weights: the
                     kept tensors carry the random weights; the tensors the loader drops are
                     written with their published names and shapes as one broadcast value each
                     (a few bytes: their values never reach the graph)
"""

import copy
import types

import torch

from . import common
from .common import ExportError, KeyMap, gap


def drop(reason):
    return ("drop", reason)


def placeholder(shape, dtype=torch.float32):
    """A tensor of the given shape that stores one value (stride 0)."""
    if len(shape) == 0:
        return torch.zeros((), dtype=dtype)
    return torch.zeros((1,), dtype=dtype).expand(*shape)


def meta_state(build):
    """Key -> (shape, dtype) of a module built on the meta device (no memory, no init)."""
    real_linspace = torch.linspace

    def cpu_linspace(*a, **k):
        # SwinUNETR reads its drop-path rates with .item(), which a meta tensor cannot answer.
        k.setdefault("device", "cpu")
        return real_linspace(*a, **k)

    torch.linspace = cpu_linspace
    try:
        with torch.device("meta"):
            m = build()
    finally:
        torch.linspace = real_linspace
    return {k: (tuple(v.shape), v.dtype) for k, v in m.state_dict().items()}


def with_placeholders(layout, kept):
    """The published state dict: kept tensors as given, every other key of layout a placeholder."""
    out = {}
    for k, (shape, dtype) in layout.items():
        out[k] = kept[k] if k in kept else placeholder(shape, dtype)
    extra = set(kept) - set(layout)
    if extra:
        raise ExportError("random layout: kept keys not in the published layout: %s" % sorted(extra)[:6])
    return out


def prefixed(state, prefix):
    return {prefix + k: v for k, v in state.items()}


class Model:
    name = ""
    shape = (1, 48, 48, 48)  # input after the batch axis
    dim = 0
    value_range = (0.0, 1.0)  # ScaleIntensityRanged output range (clamp)
    keymap = KeyMap()

    def unwrap(self, ckpt):
        return ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt

    def post_load(self, enc):
        """Export fixes after loading (e.g. ContBatchNorm3d -> InstanceNorm3d)."""

    def body(self, enc):
        return enc

    def layouts(self, state):
        """[(variant name, checkpoint object)] in the published layout(s); the first is exported,
        every other one must load to the same tensors."""
        raise NotImplementedError


class Head(torch.nn.Module):
    """Wraps an encoder with a pooling function (kept out of the module's state dict)."""

    def __init__(self, enc, fn):
        super().__init__()
        self.enc = enc
        self.fn = fn

    def forward(self, x):
        return self.fn(self.enc, x)


# ---- CT-CLIP ---------------------------------------------------------------------------------

class CTClipVit(Model):
    name = "CTClipVit"
    shape = (1, 60, 60, 60)
    dim = 512
    value_range = (-1.0, 1.0)

    def __init__(self):
        from . import ctvit

        rules = [("visual_transformer." + k, drop(r)) for k, r in ctvit.DROPPED.items()]
        rules += [
            ("visual_transformer.", ""),
            ("text_transformer.", drop("text encoder (CXR-BERT), not part of the image embedding")),
            ("to_text_latent", drop("text projection head")),
            ("to_visual_latent", drop("image projection head; TumorImagingBench pools the quantised tokens instead")),
            ("temperature", drop("CLIP temperature")),
        ]
        self.keymap = KeyMap(*rules)

    def encoder(self):
        from . import ctvit

        return ctvit.CTViTEncoder(**ctvit.published_config())

    def body(self, enc):
        # TumorImagingBench: tokens (b, t, h, w, d) -> NCDHW -> adaptive_avg_pool3d -> flatten.
        return Head(enc, lambda e, x: gap(e(x).permute(0, 4, 1, 2, 3)))

    def layouts(self, state):
        from transformers import BertConfig, BertModel

        vis = {
            "to_pixels_first_frame.0.weight": ((400, 512), torch.float32),
            "to_pixels_first_frame.0.bias": ((400,), torch.float32),
            "to_pixels.0.weight": ((4000, 512), torch.float32),
            "to_pixels.0.bias": ((4000,), torch.float32),
            "to_patch_emb_first_frame.1.weight": ((400,), torch.float32),
            "to_patch_emb_first_frame.1.bias": ((400,), torch.float32),
            "to_patch_emb_first_frame.2.weight": ((512, 400), torch.float32),
            "to_patch_emb_first_frame.2.bias": ((512,), torch.float32),
            "to_patch_emb_first_frame.3.weight": ((512,), torch.float32),
            "to_patch_emb_first_frame.3.bias": ((512,), torch.float32),
            "vq._codebook.initted": ((1,), torch.float32),
            "vq._codebook.cluster_size": ((1, 8192), torch.float32),
        }
        vis.update({k: (tuple(v.shape), v.dtype) for k, v in state.items()})
        layout = {"visual_transformer." + k: v for k, v in vis.items()}
        # CT-CLIP: BiomedVLP-CXR-BERT-specialized text encoder (BERT-base), projections, temperature.
        text = meta_state(lambda: BertModel(BertConfig(vocab_size=30522)))
        layout.update({"text_transformer." + k: v for k, v in text.items()})
        for k, shape in (("to_text_latent.weight", (512, 768)), ("to_visual_latent.weight", (512, 294912)),
                         ("to_text_latent_extra.weight", (512, 768)), ("to_visual_latent_extra.weight", (512, 294912))):
            layout[k] = (shape, torch.float32)
        layout["temperature"] = ((), torch.float32)
        return [("CT-CLIP_v2", with_placeholders(layout, prefixed(state, "visual_transformer.")))]


# ---- MONAI SegResNet encoders (CT-FM, VISTA3D) ------------------------------------------------

def last_level_gap(enc, x):
    # TumorImagingBench's head_module: the last of the encoder's levels, average-pooled.
    return gap(enc(x)[-1])


class CTFM(Model):
    name = "CTFM"
    dim = 512
    keymap = KeyMap(("encoder.", ""), ("up_layers.", drop("SegResNetDS decoder")))

    def encoder(self):
        from monai.networks.nets.segresnet_ds import SegResEncoder

        return SegResEncoder(blocks_down=(1, 2, 2, 4, 4))

    def body(self, enc):
        return Head(enc, last_level_gap)

    def layouts(self, state):
        from monai.networks.nets.segresnet_ds import SegResNetDS

        layout = meta_state(lambda: SegResNetDS(blocks_down=(1, 2, 2, 4, 4)))
        return [("pretrained_segresnet", with_placeholders(layout, prefixed(state, "encoder.")))]


class VISTA3D(Model):
    name = "VISTA3D"
    dim = 768
    keymap = KeyMap(
        ("image_encoder.encoder.", ""),
        ("image_encoder.", drop("segmentation decoder (up_layers) of the image network")),
        ("class_head.", drop("class-prompt segmentation head")),
        ("point_head.", drop("point-prompt segmentation head")),
    )

    def encoder(self):
        from monai.networks.nets.segresnet_ds import SegResEncoder

        return SegResEncoder(spatial_dims=3, in_channels=1, init_filters=48, blocks_down=[1, 2, 2, 4, 4], norm="instance")

    def body(self, enc):
        return Head(enc, last_level_gap)

    def layouts(self, state):
        from monai.networks.nets import vista3d132

        layout = meta_state(lambda: vista3d132(encoder_embed_dim=48, in_channels=1))
        return [("model_vista3d", with_placeholders(layout, prefixed(state, "image_encoder.encoder.")))]


# ---- FMCIB (MONAI ResNet-50, fmcib's two checkpoint formats) ---------------------------------

FMCIB_HEADS = [4096, 2048, 128]  # fmcib LoadModel(heads=[...]) style projection head (dropped)


class FMCIB(Model):
    name = "FMCIB"
    dim = 4096
    keymap = KeyMap(
        ("model.trunk.", ""),
        ("model.heads.", drop("self-supervised projection head (Lighter format)")),
        ("heads.", drop("self-supervised projection head (head_state_dict)")),
        ("trunk.", ""),
    )

    def encoder(self):
        from monai.networks.nets import resnet50

        # fmcib.models.fmcib_model()'s trunk, without its download.
        return resnet50(pretrained=False, n_input_channels=1, widen_factor=2, conv1_t_stride=2,
                        feed_forward=False, bias_downsample=True)

    def unwrap(self, ckpt):
        # fmcib LoadModel.load accepts both: VISSL {"trunk_state_dict", "head_state_dict"} and
        # Lighter {"state_dict": {"model.trunk.*", "model.heads.*"}}.
        if "trunk_state_dict" in ckpt:
            out = dict(ckpt["trunk_state_dict"])
            out.update(prefixed(ckpt.get("head_state_dict") or {}, "heads."))
            return out
        if "state_dict" in ckpt:
            return ckpt["state_dict"]
        raise ExportError("FMCIB: neither trunk_state_dict nor state_dict in the checkpoint (keys %s)" % sorted(ckpt)[:8])

    def layouts(self, state):
        heads = {}
        for i in range(len(FMCIB_HEADS) - 1):
            heads["%d.0.weight" % i] = placeholder((FMCIB_HEADS[i + 1], FMCIB_HEADS[i]))
            heads["%d.0.bias" % i] = placeholder((FMCIB_HEADS[i + 1],))
        lighter = {"state_dict": dict(prefixed(state, "model.trunk."), **prefixed(heads, "model.heads.")),
                   "hyper_parameters": {"note": "random weights"}}
        vissl = {"trunk_state_dict": dict(state), "head_state_dict": heads}
        return [("lighter", lighter), ("vissl", vissl)]


# ---- Merlin (merlin-vlm I3ResNet) -------------------------------------------------------------

class Merlin(Model):
    name = "Merlin"
    dim = 512
    keymap = KeyMap(
        ("encode_image.i3_resnet.", ""),
        ("encode_text.", drop("text branch (Clinical-Longformer), not part of the image embedding")),
        ("logit_scale", drop("CLIP temperature")),
    )

    def encoder(self):
        import torchvision
        from merlin.models import i3res

        # merlin.models.build.ImageEncoder, without its ImageNet download (torchvision
        # resnet152(pretrained=True)): the Merlin checkpoint overwrites every tensor.
        # No gradient checkpointing around the ResNet stages (it does not export; a no-op
        # numerically): i3res's own reference to torch.utils.checkpoint is replaced, nothing global.
        i3res.checkpoint = types.SimpleNamespace(checkpoint=lambda f, *a, **k: f(*a))
        resnet = torchvision.models.resnet152(weights=None)
        return i3res.I3ResNet(copy.deepcopy(resnet), class_nb=1692, conv_class=True, ImageEmbedding=False)

    def body(self, enc):
        def fn(e, x):
            contrastive, _ = e(x)  # (x_contrastive, x_ehr): MerlinArchitecture's outputs[0]
            return contrastive / contrastive.norm(dim=-1, keepdim=True)

        return Head(enc, fn)

    def layouts(self, state):
        from transformers import LongformerConfig, LongformerModel

        # Clinical-Longformer = longformer-base-4096's architecture.
        text = meta_state(lambda: LongformerModel(LongformerConfig(
            vocab_size=50265, max_position_embeddings=4098, type_vocab_size=1, attention_window=512)))
        layout = {"encode_image.i3_resnet." + k: (tuple(v.shape), v.dtype) for k, v in state.items()}
        layout.update({"encode_text.text_encoder." + k: v for k, v in text.items()})
        layout["encode_text.linear_layer.weight"] = ((512, 768), torch.float32)
        layout["encode_text.linear_layer.bias"] = ((512,), torch.float32)
        layout["logit_scale"] = ((), torch.float32)
        return [("merlin", with_placeholders(layout, prefixed(state, "encode_image.i3_resnet.")))]


# ---- Models Genesis and SuPreM (the fmcib package's UNet3D) -----------------------------------

def models_genesis():
    # fmcib's ModelsGenesisUNet3D, loaded from the installed package by path: fmcib.models'
    # __init__ pulls wget, loguru and fmcib's data code, which the network does not need.
    return common.load_module_file(common.package_file("fmcib", "models/models_genesis.py"), "fmcib_models_genesis")


def unet3d_down(enc, x):
    x, _ = enc.down_tr64(x)
    x, _ = enc.down_tr128(x)
    x, _ = enc.down_tr256(x)
    x, _ = enc.down_tr512(x)
    return x


class ModelsGen(Model):
    name = "ModelsGen"
    dim = 4096
    keymap = KeyMap(
        ("module.up_tr", drop("U-Net decoder")),
        ("module.out_tr", drop("U-Net output layer")),
        ("module.", ""),
    )

    def encoder(self):
        return models_genesis().UNet3D(decoder=False)

    def post_load(self, enc):
        common.contbn_to_instancenorm(enc)

    def body(self, enc):
        return enc  # UNet3D(decoder=False): AvgPool3d(3, stride 2) of (512, 6³) -> (512, 2³), flattened

    def layouts(self, state):
        layout = meta_state(lambda: models_genesis().UNet3D(n_class=1, decoder=True))
        sd = with_placeholders(prefixed(layout, "module."), prefixed(state, "module."))
        return [("Genesis_Chest_CT", {"state_dict": sd, "epoch": 0})]


class SUPREME(Model):
    name = "SUPREME"
    dim = 512
    # The published "net" is SuPreM's whole Universal_model (word_embedding encoding, 25 classes)
    # under DataParallel: only module.backbone.down_tr* is the encoder TumorImagingBench uses.
    keymap = KeyMap(
        ("module.backbone.down_tr", "down_tr"),
        ("module.backbone.up_tr", drop("U-Net decoder")),
        ("module.backbone.out_tr", drop("U-Net output layer")),
        ("module.precls_conv.", drop("Universal_model segmentation head")),
        ("module.GAP.", drop("Universal_model segmentation head")),
        ("module.controller.", drop("Universal_model segmentation head (dynamic-conv controller)")),
        ("module.organ_embedding", drop("Universal_model class (organ) embedding")),
        ("module.text_to_vision.", drop("Universal_model class-embedding projection")),
    )

    def unwrap(self, ckpt):
        if "net" not in ckpt:
            raise ExportError("SUPREME: no 'net' in the checkpoint (keys %s)" % sorted(ckpt)[:8])
        return ckpt["net"]

    def encoder(self):
        return models_genesis().UNet3D(decoder=False)  # holds down_tr64..512 (the SuPreM UNet3D encoder)

    def post_load(self, enc):
        common.contbn_to_instancenorm(enc)

    def body(self, enc):
        return Head(enc, lambda e, x: gap(unet3d_down(e, x)))

    def layouts(self, state):
        n_class = 25
        layout = meta_state(lambda: models_genesis().UNet3D(n_class=n_class, decoder=True))
        layout = {"module.backbone." + k: v for k, v in layout.items() if not k.startswith("out_tr.")}
        f32 = torch.float32
        layout.update({
            "module.precls_conv.0.weight": ((64,), f32), "module.precls_conv.0.bias": ((64,), f32),
            "module.precls_conv.2.weight": ((8, 64, 1, 1, 1), f32), "module.precls_conv.2.bias": ((8,), f32),
            "module.GAP.0.weight": ((512,), f32), "module.GAP.0.bias": ((512,), f32),
            "module.GAP.3.weight": ((256, 512, 1, 1, 1), f32), "module.GAP.3.bias": ((256,), f32),
            "module.controller.weight": ((153, 512, 1, 1, 1), f32), "module.controller.bias": ((153,), f32),
            "module.organ_embedding": ((n_class, 512), f32),
            "module.text_to_vision.weight": ((256, 512), f32), "module.text_to_vision.bias": ((256,), f32),
        })
        kept = {"module.backbone." + k: v for k, v in state.items()}
        return [("supervised_suprem_unet_2100", {"net": with_placeholders(layout, kept), "epoch": 2100})]


# ---- PASTA (nnU-Net v1 Generic_UNet encoder) --------------------------------------------------

def pasta_unet(num_classes=2):
    from nnunet.network_architecture.generic_UNet import ConvDropoutNormNonlin, Generic_UNet
    from nnunet.network_architecture.initialization import InitWeights_He
    from torch import nn

    # PASTA's get_pasta() / TumorImagingBench's Generic_UNet: base 64, 5 poolings, 2 convs per
    # stage, InstanceNorm (affine, eps 1e-5), LeakyReLU 0.01, strided-conv pooling, at most 1024.
    return Generic_UNet(1, 64, num_classes, 5, 2, 2, nn.Conv3d, nn.InstanceNorm3d, {"eps": 1e-5, "affine": True},
                        nn.Dropout3d, {"p": 0, "inplace": True}, nn.LeakyReLU, {"negative_slope": 1e-2, "inplace": True},
                        True, False, lambda x: x, InitWeights_He(1e-2), None, None, False, True, True, 1024,
                        basic_block=ConvDropoutNormNonlin)


class PastaEncoder(torch.nn.Module):
    """The context path of nnU-Net's Generic_UNet: TumorImagingBench's PASTA forward."""

    def __init__(self, unet):
        super().__init__()
        self.conv_blocks_context = unet.conv_blocks_context

    def forward(self, x):
        for block in self.conv_blocks_context:
            x = block(x)
        return x


class PASTA(Model):
    name = "PASTA"
    dim = 1024
    keymap = KeyMap(
        ("conv_blocks_context.", "conv_blocks_context."),
        ("conv_blocks_localization.", drop("nnU-Net decoder")),
        ("tu.", drop("nnU-Net decoder (transposed convolutions)")),
        ("seg_outputs.", drop("nnU-Net segmentation outputs")),
    )

    def unwrap(self, ckpt):
        sd = ckpt.get("network_weights", ckpt)  # an nnU-Net checkpoint, or the bare state dict
        return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}

    def encoder(self):
        return PastaEncoder(pasta_unet())

    def body(self, enc):
        return Head(enc, lambda e, x: gap(e(x)))

    def layouts(self, state):
        layout = meta_state(pasta_unet)
        return [("PASTA final", with_placeholders(layout, dict(state)))]


# ---- VoCo (MONAI SwinUNETR v2, feature size 192) ----------------------------------------------

VOCO_ARGS = dict(in_channels=1, out_channels=2, feature_size=192, use_v2=True)


class Voco(Model):
    name = "Voco"
    shape = (1, 64, 64, 64)
    dim = 3072
    keymap = KeyMap(
        ("swinViT.", ""),
        ("encoder", drop("UNETR decoder (encoder1..10 residual blocks)")),
        ("decoder", drop("UNETR decoder")),
        ("out.", drop("UNETR output layer")),
    )

    def unwrap(self, ckpt):
        # VoCo's own loader (Large-Scale-Medical models.load): state_dict/net/network_weights/
        # student containers, and module., backbone. and swin_vit spellings of the keys.
        for k in ("state_dict", "network_weights", "net", "student"):
            if isinstance(ckpt, dict) and k in ckpt:
                ckpt = ckpt[k]
                break
        out = {}
        for k, v in ckpt.items():
            k = k.replace("module.", "").replace("backbone.", "").replace("swin_vit", "swinViT")
            out[k] = v
        return out

    def encoder(self):
        from monai.networks.nets import SwinUNETR
        from monai.networks.nets.swin_unetr import PatchMerging, SwinTransformer

        # SwinUNETR(**VOCO_ARGS).swinViT without building the 1.16 B-parameter decoder around it;
        # the arguments are SwinUNETR's defaults, checked against the meta-built network below.
        vit = SwinTransformer(in_chans=1, embed_dim=192, window_size=(7, 7, 7), patch_size=(2, 2, 2),
                              depths=(2, 2, 2, 2), num_heads=(3, 6, 12, 24), mlp_ratio=4.0, qkv_bias=True,
                              drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0, norm_layer=torch.nn.LayerNorm,
                              patch_norm=False, use_checkpoint=False, spatial_dims=3, downsample=PatchMerging,
                              use_v2=True)
        want = meta_state(lambda: SwinUNETR(**VOCO_ARGS).swinViT)
        have = {k: (tuple(v.shape), v.dtype) for k, v in vit.state_dict().items()}
        if want != have:
            raise ExportError("Voco: SwinTransformer differs from SwinUNETR(%s).swinViT" % VOCO_ARGS)
        return vit

    def body(self, enc):
        # hidden_states[-1] layer-normed (normalize=True), global average pool.
        return Head(enc, lambda e, x: gap(e(x, normalize=True)[-1]))

    def layouts(self, state):
        from monai.networks.nets import SwinUNETR

        layout = meta_state(lambda: SwinUNETR(**VOCO_ARGS))
        return [("VoCo_H_SSL_head", {"state_dict": with_placeholders(layout, prefixed(state, "swinViT."))})]


MODELS = [CTClipVit(), CTFM(), FMCIB(), Merlin(), ModelsGen(), PASTA(), SUPREME(), VISTA3D(), Voco()]
BY_NAME = {m.name: m for m in MODELS}


def randomize(module, seed):
    """Random weights for module, in place, deterministic in seed: every float tensor of the
    state dict is redrawn (weights ~ N(0, 1/fan_in), norm scales ~ U(0.5, 1.5), biases and
    running means ~ N(0, 0.1), running variances ~ U(0.5, 1.5)), so that no norm layer is an
    identity and a mis-loaded tensor changes the output. Integer buffers (indices, counters) and
    the codebook's initialised flag keep their constructed values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.is_floating_point() or t.numel() == 0 or name.endswith("initted"):
                continue
            last = name.rsplit(".", 1)[-1]
            if last == "running_var":
                new = torch.rand(t.shape, generator=g) + 0.5
            elif last in ("running_mean", "bias", "beta"):
                new = torch.randn(t.shape, generator=g) * 0.1
            elif t.dim() == 1:
                new = torch.rand(t.shape, generator=g) + 0.5
            else:
                fan_in = t[0].numel()
                new = torch.randn(t.shape, generator=g) / fan_in ** 0.5
            t.copy_(new.to(t.dtype))


def build(model, ckpt):
    """The exported module for a checkpoint object: encoder, strict load, export fixes, head."""
    enc = model.encoder()
    dropped = common.load_strict(enc, model.unwrap(ckpt), model.keymap, model.name)
    model.post_load(enc)
    return common.Embedder(model.body(enc), model.dim).eval(), dropped


def same_tensors(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
