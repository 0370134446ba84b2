"""The PyTorch half of checkpoint import (needs the torch extra; only ``checkpoints.py`` imports it, lazily).

It reads a checkpoint without running pickled code, lets spandrel detect and build the network, and exports
the graph ``FacePriorRestorer`` runs: image ``input`` [1, 3, S, S] in [-1, 1] RGB to ``output`` of the same
shape, plus CodeFormer's fidelity as a double input.
"""

from __future__ import annotations

import contextlib
import functools
import math
import pickle
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import spandrel
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from spandrel import MAIN_REGISTRY, ArchRegistry, ArchSupport, StateDict, canonicalize_state_dict
from spandrel.architectures.GFPGAN.__arch.stylegan2_clean_arch import ModulatedConv2d  # GFPGAN 1.2-1.4's
from spandrel_extra_arches import EXTRA_REGISTRY

from facerestore.errors import ModelError, SkippedCheckpointError

OPSET = 17
IMAGE_INPUT, OUTPUT = "input", "output"
# The TorchScript exporter: the torch.export-based one stops at CodeFormer's branch on its fidelity and writes
# GFPGAN's Split with an attribute opset 17 does not have.
EXPORTER = f"torch {torch.__version__} (TorchScript exporter, opset {OPSET}), spandrel {spandrel.__version__}"


def _face_prior_architectures() -> ArchRegistry:
    """Only the architectures facerestore has entries for; CodeFormer's comes from spandrel_extra_arches."""
    face_priors = ArchRegistry()
    face_priors.add(MAIN_REGISTRY["GFPGAN"], MAIN_REGISTRY["RestoreFormer"], EXTRA_REGISTRY["CodeFormer"])
    return face_priors


FACE_PRIORS = _face_prior_architectures()
SUPPORTED = tuple(support.architecture.id for support in FACE_PRIORS)


def read_state_dict(path: Path) -> StateDict:
    """The tensors of a .safetensors file, or of a torch.save file read by torch's weights-only unpickler,
    which refuses any pickled code (never a full unpickle)."""
    try:
        if path.suffix.lower() == ".safetensors":
            content: object = load_file(path, device="cpu")
        else:
            content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ModelError(f"{path}: {_refusal(error)}") from None
    except Exception as error:  # each format reports damage its own way (zip, pickle, header)
        raise ModelError(
            f"{path}: not a readable checkpoint (truncated or corrupt?): {_first_line(error)}"
        ) from None
    tensors = {}
    if isinstance(content, dict):
        unwrapped = canonicalize_state_dict(content)  # official files nest it under "params_ema" and the like
        tensors = {key: value for key, value in unwrapped.items() if isinstance(value, torch.Tensor)}
    if not tensors:
        raise ModelError(f"{path}: holds no network weights (no state dict of tensors)")
    return tensors


def _refusal(error: pickle.UnpicklingError) -> str:
    named = re.search(r"GLOBAL ([\w.]+)", str(error))
    if named:
        return (
            f"refused: loading it would run pickled code ({named[1]}), which facerestore never does; "
            "use the official release file or a .safetensors copy"
        )
    return f"not a PyTorch checkpoint: {_first_line(error)}"


def _first_line(error: Exception) -> str:
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


def architecture_of(state: StateDict) -> str:
    """spandrel's id for the face prior the weights belong to; SkippedCheckpointError names any other."""
    for support in FACE_PRIORS.architectures("detection"):
        if support.detect(state):
            return str(support.architecture.id)
    other = _recognised(state)
    found = f"spandrel recognises {other}" if other else "no architecture spandrel knows"
    raise SkippedCheckpointError(
        f"not a face restorer facerestore imports ({found}; supported: {', '.join(SUPPORTED)})"
    )


def _recognised(state: StateDict) -> str | None:
    others: list[ArchSupport] = [*MAIN_REGISTRY.architectures("detection"), *EXTRA_REGISTRY]
    return next((str(support.architecture.id) for support in others if support.detect(state)), None)


def build_network(state: StateDict, architecture: str) -> torch.nn.Module:
    try:
        network = FACE_PRIORS[architecture].architecture.load(state).model
    except Exception as error:  # missing or misshapen tensors: spandrel and torch describe them at length
        raise ModelError(f"{architecture} weights do not load: {_first_line(error)}") from None
    return network.eval()


class _GFPGANGraph(torch.nn.Module):
    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        # Upstream draws fresh StyleGAN noise at every call; the checkpoint's stored noise maps make a face
        # come out the same at every run (the noise only moves fine texture).
        return self.network(image, return_rgb=False, randomize_noise=False)[0]


class _RestoreFormerGraph(torch.nn.Module):
    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.network(image)[0]


class _CodeFormerGraph(torch.nn.Module):
    """CodeFormer's inference with the fidelity as a graph input.

    Upstream's forward skips the encoder-to-decoder fusion when the fidelity is 0 (a Python branch on a value
    that has to stay an input here) and names feature sizes from traced shapes; fusing at fidelity 0 adds
    exactly 0, so this graph always fuses, with the fusion points taken from the network's own tables.
    """

    network: Any  # spandrel's CodeFormer: its parts are reached by name

    def __init__(self, network: Any) -> None:
        super().__init__()
        self.network = network
        self.skip_after = {network.fuse_encoder_block[size]: size for size in network.connect_list}
        self.fuse_after = {network.fuse_generator_block[size]: size for size in network.connect_list}
        self.code_side = math.isqrt(network.position_emb.shape[0])

    def forward(self, image: torch.Tensor, fidelity: torch.Tensor) -> torch.Tensor:
        network = self.network
        skips = {}
        features = image
        for index, block in enumerate(network.encoder.blocks):
            features = block(features)
            if index in self.skip_after:
                skips[self.skip_after[index]] = features
        tokens = network.feat_emb(features.flatten(2).permute(2, 0, 1))  # (H*W, batch, channels)
        position = network.position_emb.unsqueeze(1)
        for layer in network.ft_layers:
            tokens = layer(tokens, query_pos=position)
        logits = network.idx_pred_layer(tokens)
        codes = logits.argmax(dim=2).flatten()  # upstream takes the top of the softmax: the same code
        codebook = network.quantize.embedding.weight
        side = self.code_side
        decoded = codebook[codes].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        decoded = _match_statistics(decoded, features)
        strength = fidelity.to(image.dtype)
        for index, block in enumerate(network.generator.blocks):
            decoded = block(decoded)
            if index in self.fuse_after:
                size = self.fuse_after[index]
                decoded = network.fuse_convs_dict[size](skips[size], decoded, strength)
        return decoded


def _match_statistics(content: torch.Tensor, style: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Adaptive instance normalisation: each channel of ``content`` takes the mean and spread of ``style``."""

    def mean_and_spread(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = features.flatten(2)
        return flat.mean(dim=2)[..., None, None], (flat.var(dim=2) + eps).sqrt()[..., None, None]

    content_mean, content_spread = mean_and_spread(content)
    style_mean, style_spread = mean_and_spread(style)
    return (content - content_mean) / content_spread * style_spread + style_mean


def _modulated_conv(module: Any, features: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """StyleGAN2's modulated convolution for one picture, the style applied to the activations rather than
    the weights: scaling input channel i by s_i and output channel o by the demodulation d_o equals
    convolving with W[o, i] s_i d_o, but keeps the weights constant, so ONNX Runtime can pre-pack them
    (docs/benchmarks.md, "Face priors": GFPGAN's decoder is made of these)."""
    scale = module.modulation(style)  # (1, in channels)
    weight = module.weight[0]  # (out, in, k, k)
    features = features * scale[:, :, None, None]  # per channel, so it commutes with the resampling
    if module.sample_mode is not None:
        factor = 2.0 if module.sample_mode == "upsample" else 0.5
        features = F.interpolate(features, scale_factor=factor, mode="bilinear", align_corners=False)
    out = F.conv2d(features, weight, padding=module.padding)
    if module.demodulate:
        energy = scale.pow(2) @ weight.pow(2).sum((2, 3)).T  # (1, out): each output's squared weights
        out = out * torch.rsqrt(energy + module.eps)[:, :, None, None]
    return out


@contextlib.contextmanager
def _constant_conv_weights(network: torch.nn.Module) -> Iterator[None]:
    """While exporting, GFPGAN's modulated convolutions take their style on the activations."""
    modulated = [module for module in network.modules() if isinstance(module, ModulatedConv2d)]
    for module in modulated:
        module.forward = functools.partial(_modulated_conv, module)
    try:
        yield
    finally:
        for module in modulated:
            del module.forward


_GRAPHS: dict[str, type[torch.nn.Module]] = {
    "GFPGAN": _GFPGANGraph,
    "RestoreFormer": _RestoreFormerGraph,
    "CodeFormer": _CodeFormerGraph,
}


def export_onnx(
    network: torch.nn.Module,
    architecture: str,
    destination: Path,
    size: int,
    fidelity_input: str | None,
) -> None:
    image = torch.zeros(1, 3, size, size)
    inputs: tuple[torch.Tensor, ...] = (image,)
    names = [IMAGE_INPUT]
    if fidelity_input:
        inputs += (torch.tensor([0.5], dtype=torch.float64),)  # a double [1], like the published exports
        names.append(fidelity_input)
    with warnings.catch_warnings(), torch.no_grad(), _constant_conv_weights(network):
        # Tracer warnings are expected: the graph is traced at its one fixed size on purpose.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _GRAPHS[architecture](network).eval(),
            inputs,
            str(destination),
            input_names=names,
            output_names=[OUTPUT],
            opset_version=OPSET,
            dynamo=False,
        )
