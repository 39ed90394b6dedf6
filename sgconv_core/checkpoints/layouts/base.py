"""The interface of a layout adapter: what one official checkpoint layout must tell the loader.

An adapter is an instance of a `Layout` subclass, listed in ``layouts.LAYOUTS``. The loader

1. finds layers: a state-dict key ending in ``marker`` marks a layer at ``prefix = key[:-len(marker)]``; the
   adapter whose marker the key ends with and whose ``matches(sd, prefix, key)`` is true claims that prefix;
2. builds each layer's kernel with ``build_kernel(ctx, prefix) -> (kernel, settings used)``: it reads the
   official keys under ``prefix``, converts them to our (v4) conventions and loads one of our kernel classes;
3. rebuilds the runnable layer / model where it can (``runnable.py``), reading the layer-level facts below.

The facts themselves (key names, shapes, sign conventions, defaults) are in docs/official-layouts.md.
"""
from __future__ import annotations

from ...kernels import Kernel


class Layout:
    """One official checkpoint layout. Class attributes are facts; override the methods that differ.

    family: the tag in ``Checkpoint.layout`` ('<family>-<container>') and in each layer's config.
    title: the name used in warnings. marker: the key suffix that marks a layer (see the module docstring).
    default_source: what an assumed setting is, in the warning that reports it.

    Runnable-layer facts (``runnable.layer_module``):
    block_suffix: '' when the layer at ``prefix`` owns ``D`` and ``output_linear`` (v3 S4, GConv, minimal S4D);
        'layer.' when the kernel's layer (v4 FFTConv, holding ``D``) sits at ``<block>layer.`` inside a block
        (v4 S4Block) that owns ``output_linear``. block_name: that block, in messages.
    clips_at_l_max: the official layer asks its kernel for min(L, l_max) taps (v4 FFTConv, v3 S4).
    postact_key, postact_default: the config entry naming the output activation, and its default.
    linear_output_any_postact: a (H, C*H) output linear is a plain linear whatever that entry says (GConv).
    flat_D: ``D`` is stored (H,) and means (1, H) (minimal S4D).
    rebuild_note: a caveat added to the warnings when the layer is rebuilt, or None.
    """

    family: str = ""
    title: str = ""
    marker: str = ""
    default_source: str = "the default of the state-spaces version detected from the key names"
    block_suffix: str = ""
    block_name: str = "the layer"
    clips_at_l_max: bool = False
    postact_key: str = "postact"
    postact_default: str | None = "glu"
    linear_output_any_postact: bool = False
    flat_D: bool = False
    rebuild_note: str | None = None

    def matches(self, sd: dict, prefix: str, key: str) -> bool:
        """Whether the layer marked by ``key`` (at ``prefix``) is of this layout; key ends in ``marker``."""
        return True

    def build_kernel(self, ctx, prefix: str) -> tuple[Kernel, dict]:
        """Our kernel for the layer at ``prefix``, and the settings it was built with (shown per layer)."""
        raise NotImplementedError

    def refuse_layer(self, ctx, prefix: str, kernel: Kernel) -> str | None:
        """Why the official layer around this kernel cannot be rebuilt exactly (a layout-specific option), or None."""
        return None

    def inner_activation(self, ctx, prefix: str) -> tuple[str | None, str | None]:
        """(an activation the official layer applies before the configured one, or None; a caveat to warn, or None)."""
        return None, None

    def block_prefix(self, prefix: str) -> str:
        """The prefix of the module that owns ``output_linear``: the block around the layer, or the layer itself."""
        s = self.block_suffix
        return prefix[: -len(s)] if s and prefix.endswith(s) else prefix

    def find_block(self, ctx, prefix: str) -> tuple[str | None, str | None]:
        """(block prefix, None), or (None, why) when the module that should own ``output_linear`` is not there."""
        return prefix, None

    def __repr__(self) -> str:
        return f"<layout {self.family}>"


class FFTConvInBlock(Layout):
    """v4: the kernel's ``FFTConv`` (holding ``D``) at ``<block>layer.`` inside an ``S4Block`` at ``<block>``.

    S4Block owns ``output_linear.0.*`` (final_act 'glu' by default); FFTConv asks its kernel for min(L, l_max)
    taps. Its ``swap_channels`` option flattens the channels as '(h c)', which our layer does not do.
    """

    block_suffix, block_name = "layer.", "the S4Block"
    clips_at_l_max = True
    postact_key = "final_act"

    def find_block(self, ctx, prefix: str) -> tuple[str | None, str | None]:
        block = prefix[: -len(self.block_suffix)] if prefix.endswith(self.block_suffix) else None
        if block is None or not any(k.startswith(block + "output_linear.") for k in ctx.sd):
            return None, "the FFTConv layer has no S4Block output linear around it"
        return block, None

    def inner_activation(self, ctx, prefix: str) -> tuple[str | None, str | None]:
        """The training pipeline's S4Block (src/models/sequence/modules/s4block.py) takes ``activation`` itself, so
        its FFTConv keeps its own default activation='gelu': y = act(gelu(conv + D u)). The standalone
        models/s4/s4.py S4Block passes ``activation`` to the FFTConv and applies it once. A Lightning checkpoint, or a
        state dict with the pipeline's 'model.' prefix, comes from the pipeline; any other file is read as the
        standalone block, with a caveat."""
        if ctx.container == "lightning" or prefix.startswith("model."):
            return "gelu", None
        return None, ("rebuilt as the standalone models/s4/s4.py S4Block, which applies its activation once; an "
                      "S4Block saved by the training pipeline (src/models/sequence/modules/s4block.py) applies a GELU "
                      "before it, so its outputs differ.")

    def refuse_layer(self, ctx, prefix: str, kernel: Kernel) -> str | None:
        if ctx.hp.get("swap_channels") and kernel.channels > 1:
            return "swap_channels=True"
        return None
