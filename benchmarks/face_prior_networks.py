"""The real face-prior architectures with random weights, built by spandrel's own classes: the speed
benchmark times them and the checkpoint tests import them (timing does not depend on weight values)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def random_weights(build: Callable[[], Any]) -> Any:
    """The network ``build`` makes, every parameter random: upstream starts biases, noise strengths and
    position embeddings at 0, which would leave those paths untested."""
    import torch

    torch.manual_seed(0)
    network = build().eval()
    with torch.no_grad():
        for tensor in network.state_dict().values():
            if tensor.is_floating_point() and not tensor.any():
                tensor.normal_(std=0.02)
    return network


def gfpgan_14() -> Any:
    from spandrel.architectures.GFPGAN import GFPGAN

    # GFPGAN 1.3 / 1.4: upstream's "clean" architecture, 512 px, channel multiplier 2
    return GFPGAN(
        out_size=512,
        num_style_feat=512,
        channel_multiplier=2,
        decoder_load_path=None,
        fix_decoder=False,
        num_mlp=8,
        input_is_latent=True,
        different_w=True,
        narrow=1,
        sft_half=True,
    )


def codeformer() -> Any:
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

    return CodeFormer()


def restoreformer() -> Any:
    from spandrel.architectures.RestoreFormer import RestoreFormer

    return RestoreFormer()
