"""Rebuilding a runnable model around the kernels, where the official layout allows an exact rebuild.

`layer_module`: one official layer -> our ``ConvLayer`` (B, H, L) -> (B, H, L): causal FFT convolution with the
kernel, + D u (``D`` (C, H)), activation, then the output linear: (2H, C*H) + GLU, or (H, C*H) plain. Where D and
the output linear live, whether the layer clips its kernel at l_max, and the config entry naming the output
activation are facts of the layout (`base.Layout`); see docs/official-layouts.md §2.4, §3.2, §4, §5.

`build_backbone`: a v3/v4 Lightning checkpoint's whole model, from its Hydra config (``hyper_parameters['model']``)
and keys: ``encoder.0.weight`` (H, d_in) + bias (a linear) or (n_tokens, H) (an embedding);
``model.layers.{i}.layer.`` (v3) / ``model.layers.{i}.layer.layer.`` (v4) kernels; ``model.layers.{i}.norm.norm.*``
(LayerNorm ``weight/bias`` or scalar TransposedLN ``m/s``); ``model.norm.*`` when prenorm;
``decoder.0.output_transform.weight`` (d_out, H) + bias -> our ``SequenceModel``.

Anything else is not rebuilt: the reason ends up in the "kernels only" warning.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ...kernels import Kernel
from .base import Layout
from .context import Ctx

_ACTIVATIONS = {nn.GELU: "gelu", nn.ReLU: "relu", nn.Identity: "id", nn.SiLU: "silu"}
_EXTRAS = ("input_linear.", "input_gate.", "output_gate.")


class _Refused(Exception):
    """The official layer / model cannot be rebuilt exactly; the message says why."""


def layer_module(ctx: Ctx, kernel: Kernel, p: str, layout: Layout):
    """A ConvLayer (B,H,L)->(B,H,L) reproducing the official layer around kernel prefix p.

    -> (layer, None, keys used) or (None, why, None)."""
    try:
        return _layer_module(ctx, kernel, p, layout)
    except _Refused as e:
        return None, str(e), None


def _layer_module(ctx: Ctx, kernel: Kernel, p: str, layout: Layout):
    from ...layers import ConvLayer
    from ...model import add_inner_activation

    H, C = kernel.H, kernel.channels
    block = _find_block(ctx, kernel, p, layout)
    act = ctx.hp.get("activation", "gelu")
    fa = ctx.hp.get(layout.postact_key, layout.postact_default)
    if act not in ("gelu", "relu", "id", "silu", None):
        raise _Refused(f"activation {act!r} is not supported")
    D = ctx.get(p + "D", (1, 2))
    if layout.flat_D:
        D = D.reshape(1, -1)
    if tuple(D.shape) != (C, H):
        raise _Refused(f"'{p}D' has shape {tuple(D.shape)}, not ({C}, {H})")
    W, b, wkey, bkey = _output_linear(ctx, block + "output_linear.", C * H)
    if W.shape[0] == 2 * H:
        output = "glu"
    elif W.shape[0] == H and (fa in (None, "id", "identity", "linear") or layout.linear_output_any_postact):
        output = "linear"
    else:
        raise _Refused(f"output linear {tuple(W.shape)} with final activation {fa!r} is not supported")
    clip = layout.clips_at_l_max and kernel.l_max is not None
    inner, inner_note = layout.inner_activation(ctx, p)
    with torch.random.fork_rng():
        layer = ConvLayer(kernel, act or "id", output, 0.0, clip_to_l_max=clip)
    if inner:
        add_inner_activation(layer, inner)
    layer = layer.to(next(kernel.parameters()).dtype)
    with torch.no_grad():
        layer.D.copy_(D)
        layer.output_linear.weight.copy_(W)
        layer.output_linear.bias.copy_(b)
    if layout.clips_at_l_max and kernel.l_max is None:
        ctx.warn(f"{ctx.source}: l_max is unknown, so the rebuilt layer uses the full kernel for every input length; "
                 "the official layer (v4 FFTConv, v3 S4) clips the kernel at l_max for longer inputs. "
                 "Pass l_max=... to match.")
    if layout.rebuild_note:
        ctx.warn(f"{ctx.source}: {layout.rebuild_note}")
    if inner_note:
        ctx.warn(f"{ctx.source}: {inner_note}")
    return layer.eval(), None, {p + "D", wkey, bkey}


def _find_block(ctx: Ctx, kernel: Kernel, p: str, layout: Layout) -> str:
    """The prefix owning output_linear; refuses bottlenecks, gates and layout-specific options."""
    block, why = layout.find_block(ctx, p)
    if why:
        raise _Refused(why)
    for extra in _EXTRAS:
        if any(k.startswith(block + extra) for k in ctx.sd):
            raise _Refused(f"{layout.block_name} has '{extra[:-1]}' (bottleneck/gate), which we do not rebuild")
    why = layout.refuse_layer(ctx, p, kernel)
    if why:
        raise _Refused(why)
    return block


def _output_linear(ctx: Ctx, lin_prefix: str, d_in: int):
    """-> (W (d_out, d_in), b (d_out,), weight key, bias key): a Linear, Sequential(Linear, GLU) or width-1 Conv1d."""
    if any(k.endswith(("weight_g", "weight_v")) and k.startswith(lin_prefix) for k in ctx.sd):
        raise _Refused("the output linear uses weight norm")
    if lin_prefix + "0.weight" in ctx.sd:
        wkey, bkey = lin_prefix + "0.weight", lin_prefix + "0.bias"
    elif lin_prefix + "weight" in ctx.sd:
        wkey, bkey = lin_prefix + "weight", lin_prefix + "bias"
    else:
        raise _Refused(f"no '{lin_prefix}weight' (a linear=True or final_act=None layer is not rebuilt)")
    W = ctx.get(wkey, (2, 3))
    if W.dim() == 3:
        if W.shape[-1] != 1:
            raise _Refused(f"'{wkey}' is a convolution of width {W.shape[-1]}")
        W = W[..., 0]
    b = ctx.get(bkey, (1, 2)).reshape(-1) if ctx.has(bkey) else torch.zeros(W.shape[0], dtype=W.dtype)
    if W.shape[1] != d_in or b.shape[0] != W.shape[0]:
        raise _Refused(f"'{wkey}' has shape {tuple(W.shape)}, not (·, {d_in})")
    return W, b, wkey, bkey


# ------------------------------------------------------------------------------------------ the whole model
def build_backbone(ctx: Ctx, kernels: list[Kernel], layers: list[tuple[str, Layout]]):
    """Rebuild the v3/v4 SequenceModel + encoder/decoder of a Lightning checkpoint from its Hydra config.

    layers: (kernel prefix, layout) per kernel. -> (model, None) or (None, why)."""
    try:
        return _build_backbone(ctx, kernels, layers), None
    except _Refused as e:
        return None, str(e)


def _build_backbone(ctx: Ctx, kernels: list[Kernel], layers: list[tuple[str, Layout]]) -> nn.Module:
    model_cfg = _model_config(ctx, layers)
    prenorm, norm, final_norm = _norms(ctx, model_cfg)
    input_kind, d_input, dtype = _encoder(ctx, kernels[0].H)
    mode, pool, d_output, dataset = _decoder(ctx)
    model = _assemble(ctx, kernels, layers, dtype, _lightning_key, d_input=d_input, d_output=d_output,
                      input_kind=input_kind, prenorm=prenorm, norm=norm, pool=pool, final_norm=final_norm)
    if dataset not in _ONE_OUTPUT_DATASETS:
        what = "the last step's features" if mode == "last" else "the mean of the features over all steps"
        shown = f"dataset {dataset!r}" if dataset else "its dataset"
        ctx.warn(f"{ctx.source}: the model gives one output per sequence, from {what}. The official decoder takes the "
                 f"number of outputs from the dataset (l_output), which the checkpoint does not store; {shown} is "
                 "not one we know gives one output per sequence (as classification and regression datasets do), "
                 "so check that this is what the model was trained for.")
    return model.eval()


def _assemble(ctx: Ctx, kernels: list[Kernel], layers: list[tuple[str, Layout]], dtype: torch.dtype, source_key,
              **model_args) -> nn.Module:
    """Rebuild every layer (`layer_module`), check they agree, and load our SequenceModel from the official keys.

    model_args: ModelConfig fields of the model around the layers (d_input, d_output, input_kind, prenorm, norm,
    pool, final_norm). source_key: our key -> the official key for the encoder, decoder and norms."""
    from ...model import ModelConfig, SequenceModel

    layer_mods = []
    for k, (pref, layout) in zip(kernels, layers, strict=True):
        mod, why, _ = layer_module(ctx, k, pref, layout)
        if mod is None:
            raise _Refused(why)
        layer_mods.append(mod)
    outputs = {m.output for m in layer_mods}
    acts = {_activation_names(m) for m in layer_mods}
    clips = {m.clip_to_l_max for m in layer_mods}
    if len(outputs) != 1 or len(acts) != 1 or len(clips) != 1:
        raise _Refused("the layers differ in activation / output linear")
    if len({k.kind for k in kernels}) != 1:
        raise _Refused("mixed kernel families")
    if len({(k.H, k.channels, k.bidirectional) for k in kernels}) != 1:
        raise _Refused("the layers differ in width, channels or direction")
    k0 = kernels[0]
    inner, act = acts.pop()
    # the kernels' own settings, so that the model saved in our format rebuilds the same kernels (when all agree)
    own = [{a: v for a, v in k.config.items() if a not in ("d_model", "channels", "bidirectional", "l_max")}
           for k in kernels]
    kernel_args = own[0] if all(o == own[0] for o in own) else {}
    cfg = ModelConfig(d_model=k0.H, n_layers=len(kernels), kernel=k0.kind, kernel_args=kernel_args, l_max=k0.l_max or 1,
                      channels=k0.channels, bidirectional=k0.bidirectional, activation=act, inner_activation=inner,
                      output=outputs.pop(), dropout=0.0, clip_to_l_max=clips.pop(), **model_args)
    names = [k.name for k in kernels]  # SequenceModel renames its kernels 'layers.{i}'; keep the file's names
    with torch.random.fork_rng():
        model = SequenceModel(cfg, kernels=list(kernels))
    model = model.to(dtype)
    model.load_state_dict(_backbone_state(ctx, model, layer_mods, source_key), strict=True)
    for name, m in zip(names, model.kernels, strict=True):
        m.name = name
    return model


# ------------------------------------------------------------------------------------------ example.py's model
def build_example_model(ctx: Ctx, kernels: list[Kernel], layers: list[tuple[str, Layout]]):
    """state-spaces/s4 ``example.py``'s S4Model -> our SequenceModel, or (None, why).

    Keys: ``encoder.weight`` (H, d_in) + bias (a Linear), ``s4_layers.{i}.`` (the layers: minimal S4D, or a
    standalone S4Block), ``norms.{i}.weight/bias`` (LayerNorm), ``decoder.weight`` (d_out, H) + bias. Forward: encoder;
    per layer z = layer(norm(x) if prenorm else x), x = z + x, x = norm(x) unless prenorm; no final norm; mean over
    L; decoder. The ``--prenorm`` flag is not stored: the rebuilt model uses example.py's default (post-norm).
    -> (model, None) or (None, why)."""
    try:
        return _build_example_model(ctx, kernels, layers), None
    except _Refused as e:
        return None, str(e)


def _build_example_model(ctx: Ctx, kernels: list[Kernel], layers: list[tuple[str, Layout]]) -> nn.Module:
    n = len(layers)
    if [p for p, _ in layers] != [f"s4_layers.{i}." + lay.block_suffix for i, (_, lay) in enumerate(layers)]:
        raise _Refused("the layers are not example.py's s4_layers.{i}")
    H = kernels[0].H
    expected = {"encoder.weight": (H, None), "encoder.bias": (H,), "decoder.weight": (None, H), "decoder.bias": (None,)}
    expected.update({f"norms.{i}.{w}": (H,) for i in range(n) for w in ("weight", "bias")})
    for key, shape in expected.items():
        if key not in ctx.sd:
            raise _Refused(f"key '{key}' is missing for example.py's model")
        t = ctx.sd[key]
        if not torch.is_tensor(t) or t.dim() != len(shape) or any(a not in (None, b) for a, b in zip(shape, t.shape)):
            raise _Refused(f"key '{key}' has shape {tuple(getattr(t, 'shape', ()))}, not {shape}")
    blocks = tuple(lay.block_prefix(p) for p, lay in layers)
    others = [k for k in ctx.sd if k not in expected and not k.startswith(blocks)]
    if others:
        raise _Refused(f"'{others[0]}' is not part of example.py's model")
    d_input, d_output = ctx.sd["encoder.weight"].shape[1], ctx.sd["decoder.weight"].shape[0]
    if ctx.sd["decoder.bias"].shape[0] != d_output:
        raise _Refused("decoder.bias does not match decoder.weight")
    prenorm = ctx.settings.get("prenorm")
    model = _assemble(ctx, kernels, layers, ctx.sd["encoder.weight"].dtype, _example_key, d_input=d_input,
                      d_output=d_output, input_kind="continuous", prenorm=bool(prenorm), norm="layer", pool="mean",
                      final_norm=False)
    if prenorm is None:
        ctx.warn(f"{ctx.source}: example.py's --prenorm flag is not stored in the file; the model is rebuilt with its "
                 "default, post-norm (each LayerNorm after the residual sum). A model trained with --prenorm gives "
                 "different outputs: choose prenorm = True in the load settings.")
    return model.eval()


def _activation_names(layer: nn.Module) -> tuple[str | None, str]:
    """(inner activation or None, activation) of a rebuilt ConvLayer, as ModelConfig names them."""
    a = layer.activation
    if isinstance(a, nn.Sequential):
        return _ACTIVATIONS[type(a[0])], _ACTIVATIONS[type(a[1])]
    return None, _ACTIVATIONS[type(a)]


def _model_config(ctx: Ctx, layers: list[tuple[str, Layout]]) -> Mapping:
    """hyper_parameters['model'], when it describes the plain residual SequenceModel over exactly these layers."""
    hp = ctx.hp_full
    model_cfg = hp.get("model") if isinstance(hp, Mapping) else None
    if not isinstance(model_cfg, Mapping):
        raise _Refused("the checkpoint holds no model config")
    if model_cfg.get("_name_", "model") != "model":
        raise _Refused(f"backbone {model_cfg.get('_name_')!r} is not the plain SequenceModel")
    if not all(pref == f"model.layers.{i}.layer." + layout.block_suffix for i, (pref, layout) in enumerate(layers)):
        raise _Refused("the layers are not model.layers.{i}.layer")
    if model_cfg.get("n_layers") not in (None, len(layers)) or model_cfg.get("bidirectional"):
        raise _Refused("the model config does not match the layers found (or model.bidirectional)")
    if model_cfg.get("residual", "R") != "R":  # absent: configs/model/base.yaml's 'R'; null: no residual at all
        raise _Refused(f"model.residual {model_cfg.get('residual')!r} is not the plain residual 'R'")
    why = _pool_refusal(model_cfg.get("pool"))
    if why:
        raise _Refused(why)
    return model_cfg


def _pool_refusal(pool) -> str | None:
    """None when the backbone's per-block pool is the identity, else why not.

    Official v4 ``model.pool`` is ``{_name_: pool, stride: s, expand: e}`` (DownAvgPool: average over ``s`` steps,
    repeat features ``e`` times); stride 1 with expand None/1 is the identity. A missing/empty pool is none."""
    if pool is None or (isinstance(pool, Mapping) and not pool):
        return None
    if not isinstance(pool, Mapping):
        return f"model.pool {pool!r} is not a pool config"
    name, stride, expand = pool.get("_name_", "pool"), pool.get("stride", 1), pool.get("expand")
    if name != "pool":
        return f"model.pool {name!r} is not the official average pool"
    if stride not in (1, None) or expand not in (None, 1):
        return (f"model.pool downsamples (stride {stride}, expand {expand}); only the identity pool "
                "(stride 1, no expand) is rebuilt")
    return None


def _norms(ctx: Ctx, model_cfg: Mapping) -> tuple[bool, str, bool]:
    """-> (prenorm, the residual blocks' norm 'layer' | 'scalar', final norm present)."""
    prenorm = bool(model_cfg.get("prenorm", True))
    norm_cfg = model_cfg.get("norm", "layer")
    norm_name = norm_cfg.get("_name_") if isinstance(norm_cfg, Mapping) else norm_cfg
    if ctx.has("model.layers.0.norm.norm.running_mean"):
        raise _Refused("batch norm in the residual blocks")
    if ctx.has("model.layers.0.norm.norm.weight"):
        norm = "layer"
        if norm_name not in (None, "layer"):
            raise _Refused(f"norm {norm_name!r}")
    elif ctx.has("model.layers.0.norm.norm.m"):
        norm = "scalar"
    else:
        raise _Refused("the residual blocks' norm is neither LayerNorm nor scalar TransposedLN")
    final_norm = any(k.startswith("model.norm.") for k in ctx.sd)
    if final_norm != prenorm:
        raise _Refused("final norm keys do not match prenorm")
    return prenorm, norm, final_norm


def _encoder(ctx: Ctx, H: int) -> tuple[str, int, torch.dtype]:
    """-> ('continuous', d_input) for a linear encoder.0 (H, d_in) + bias, ('tokens', n) for an embedding (n, H)."""
    enc_keys = [k for k in ctx.sd if k.startswith("encoder.")]
    if set(enc_keys) - {"encoder.0.weight", "encoder.0.bias"} or "encoder.0.weight" not in ctx.sd:
        raise _Refused(f"encoder {sorted(enc_keys)[:4]} is not a single linear or embedding")
    We = ctx.get("encoder.0.weight", 2)
    if "encoder.0.bias" in ctx.sd:
        input_kind, d_input, width = "continuous", We.shape[1], We.shape[0]
    else:
        input_kind, d_input, width = "tokens", We.shape[0], We.shape[1]
    if width != H:
        raise _Refused("encoder shape")
    return input_kind, d_input, We.dtype


#: state-spaces/s4 v4 datasets (``dataset._name_``) whose ``l_output`` is 0: the official SequenceDecoder keeps one
#: step (mode 'last') or the mean over all steps (mode 'pool') and squeezes it -> (B, d_output), as our pool does.
#: src/dataloaders/synthetic.py (adding, reconstruct), lra.py (imdb, listops, pathfinder).
_ONE_OUTPUT_DATASETS = frozenset({"adding", "reconstruct", "imdb", "listops", "pathfinder"})
#: ... and those whose l_output is not 0 (copying: l_memorize steps; delay, mackey: l_seq steps): not rebuilt.
_SEQUENCE_OUTPUT_DATASETS = frozenset({"copying", "delay", "mackey"})


def _decoder(ctx: Ctx) -> tuple[str, str, int, str | None]:
    """-> (decoder mode, our pool 'mean' | 'last', d_output, dataset name) for one SequenceDecoder linear (d_out, H).

    Official v4 ``SequenceDecoder(d_model, d_output, l_output, use_lengths, mode)``: ``l_output`` comes from the
    dataset, not the config; with ``l_output=0`` mode 'last' keeps ``x[:, -1]`` and mode 'pool' the mean over all L
    steps, then ``output_transform`` (a Linear). Other modes ('first', 'sum'), ``use_lengths`` and datasets known to
    give several outputs per sequence are refused."""
    dec_keys = [k for k in ctx.sd if k.startswith("decoder.")]
    if set(dec_keys) != {"decoder.0.output_transform.weight", "decoder.0.output_transform.bias"}:
        raise _Refused(f"decoder {sorted(dec_keys)[:4]} is not a single SequenceDecoder linear")
    dec_cfg = ctx.hp_full.get("decoder")
    if dec_cfg is not None and not isinstance(dec_cfg, (Mapping, str)):
        raise _Refused("the decoder config is not a single decoder")
    name = dec_cfg.get("_name_", "sequence") if isinstance(dec_cfg, Mapping) else (dec_cfg or "sequence")
    if name != "sequence":
        raise _Refused(f"decoder {name!r} is not the official SequenceDecoder")
    mode = dec_cfg.get("mode", "last") if isinstance(dec_cfg, Mapping) else "last"
    if isinstance(dec_cfg, Mapping) and dec_cfg.get("use_lengths"):
        raise _Refused("the decoder reads each sequence's own length (use_lengths), which we do not rebuild")
    pool = {"pool": "mean", "last": "last"}.get(mode)
    if pool is None:
        raise _Refused(f"decoder mode {mode!r} (only 'last' and 'pool' are rebuilt)")
    ds_cfg = ctx.hp_full.get("dataset")
    dataset = ds_cfg.get("_name_") if isinstance(ds_cfg, Mapping) else None
    if dataset in _SEQUENCE_OUTPUT_DATASETS:
        raise _Refused(f"dataset {dataset!r} gives several outputs per sequence, which we do not rebuild")
    return mode, pool, ctx.get("decoder.0.output_transform.weight", 2).shape[0], dataset


def _lightning_key(key: str) -> str:
    """Our SequenceModel key (encoder, decoder, norms) -> the v3/v4 Lightning key."""
    if key.startswith("encoder."):
        return "encoder.0." + key[len("encoder."):]
    if key.startswith("decoder."):
        return "decoder.0.output_transform." + key[len("decoder."):]
    return "model." + key


def _example_key(key: str) -> str:
    """Our SequenceModel key -> example.py's S4Model key: encoder/decoder as is, ``layers.{i}.norm.norm.*`` ->
    ``norms.{i}.*``."""
    if key.startswith("layers.") and ".norm.norm." in key:
        i, rest = key[len("layers."):].split(".norm.norm.", 1)
        return f"norms.{i}.{rest}"
    return key


def _backbone_state(ctx: Ctx, model: nn.Module, layer_mods: list[nn.Module], source_key=_lightning_key) -> dict:
    """Our SequenceModel's state dict from the official keys (kernels and rebuilt layers already hold theirs)."""
    own = model.state_dict()
    new = {}
    for key in own:
        if key.startswith("layers.") and ".layer.kernel." in key:
            new[key] = own[key]
            continue
        if key.startswith("layers.") and ".layer." in key:  # D and output_linear: from the rebuilt layer
            i, rest = key[len("layers."):].split(".layer.", 1)
            new[key] = layer_mods[int(i)].state_dict()[rest]
            continue
        src = source_key(key)
        if src not in ctx.sd:
            raise _Refused(f"key '{src}' is missing for the backbone")
        t = ctx.get(src, None, floating=own[key].is_floating_point())
        if tuple(t.shape) != tuple(own[key].shape):
            raise _Refused(f"key '{src}' has shape {tuple(t.shape)}, not {tuple(own[key].shape)}")
        new[key] = t
    return new
