"""CLIPScore (Hessel et al., 2021, "CLIPScore: A Reference-free Evaluation Metric for Image Captioning").

    score = w * max(cos(E_image, E_text), 0)          w = `scale`, 2.5 by default

E_image and E_text are CLIP's image and text embeddings; w = 2.5 is the paper's rescaling
(it spreads typical scores over about [0, 1]); `scale=1` gives the raw cosine, clipped at 0.
Each score's details hold the unclipped, unscaled cosine as "cosine", so any w can be applied later.

Model: open_clip `ViT-L-14-quickgelu` with the "openai" weights, i.e. OpenAI's CLIP ViT-L/14, the
checkpoint GenEval's colour check uses, loaded the same way (`harness.geneval.colors`: the local
HF cache or a checkpoint file, never a download). open_clip 3.x lists "openai" weights under
both `ViT-L-14` and `ViT-L-14-quickgelu`, but only the latter builds the QuickGELU activation
those weights were trained with; `ViT-L-14` (GELU) would silently change every embedding, so it
is refused.

Differences from the paper's reference code, on purpose:
* the paper used ViT-B/32 (`arch=ViT-B-32-quickgelu` reproduces that);
* the reference prepends "A photo depicts " to each caption; GenEval prompts already read
  "a photo of ...", so `prefix` is "" by default (set it to match the reference);
* on CUDA the reference runs CLIP's fp16 weights; here "auto" is fp16 autocast on CUDA (fp32
  weights) and fp32 elsewhere. Cosines are computed in fp32 from L2-normalised embeddings.

Per call (one prompt): the text is encoded once, the images in batches of `batch_size`. Cost:
the call's forward passes (image batches + 1 text pass) spread over its candidates as whole
numbers that add up to the call's total, and the call's seconds shared evenly.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from harness.geneval.colors import DEFAULT_ARCH
from harness.plugins import Cost, VerifierScore, param

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

__all__ = ["HESSEL_SCALE", "ClipScoreParams", "ClipScoreVerifier", "spread"]

HESSEL_SCALE = 2.5  # Hessel et al.'s w


@dataclass(frozen=True, kw_only=True)
class ClipScoreParams:
    arch: str = param(DEFAULT_ARCH, help="open_clip architecture; the openai weights need a -quickgelu one.")
    pretrained: Literal["openai"] = param("openai", help="Weights tag looked up in the HF cache when `weights` "
                                                         "is not given (only openai; other weights: `weights`).")
    weights: str | None = param(None, help="Local open_clip checkpoint file; default: the openai weights from "
                                           "the HF cache.")
    scale: float = param(HESSEL_SCALE, help="w in w * max(cos, 0), at most 2.5 (Hessel et al.'s); 1 = the raw cosine.")
    prefix: str = param("", help="Text put before the prompt (Hessel et al.'s code uses 'A photo depicts ').")
    batch_size: int = param(64, help="Images per forward pass.")
    device: str | None = param(None, help="Torch device; default cuda when available, else cpu.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = param(
        "auto", help="Compute dtype (autocast over fp32 weights); auto = float16 on CUDA, float32 elsewhere.")


def spread(total: int, parts: int) -> list[int]:
    """`total` split into `parts` whole numbers that differ by at most 1 and add up to `total`.

    >>> spread(3, 4)
    [0, 1, 1, 1]
    """
    return [(i + 1) * total // parts - i * total // parts for i in range(parts)]


class ClipScoreVerifier:
    """CLIPScore of each image against its prompt with an open_clip model."""

    Params: ClassVar[type] = ClipScoreParams
    description: ClassVar[str] = ("CLIPScore: cosine similarity of open_clip image and prompt embeddings "
                                  "(ViT-L-14-quickgelu, openai), w * max(cos, 0).")
    needs_previews: ClassVar[bool] = False
    # w * max(cos, 0) with 0 < w <= 2.5 (Hessel et al.'s w is the largest scale accepted).
    score_range: ClassVar[tuple[float, float]] = (0.0, HESSEL_SCALE)

    def __init__(self, params: ClipScoreParams) -> None:
        import torch

        from harness.geneval.colors import ColorClassifier

        if params.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {params.batch_size}")
        if not 0 < params.scale <= HESSEL_SCALE:
            raise ValueError(f"scale must be in (0, {HESSEL_SCALE}] (it multiplies the clipped cosine; the "
                             f"verifier's declared score range is [0, {HESSEL_SCALE}]), got {params.scale}")
        self.params = params
        # The colour classifier's loader: same weight resolution (HF cache or file), same QuickGELU
        # check and openai preprocessing; we use its model, transform and tokenizer only.
        clip = ColorClassifier.load(arch=params.arch, weights=params.weights, device=params.device,
                                    batch_size=params.batch_size, amp=False, workers=0)
        self.model, self.preprocess, self.tokenizer = clip.model, clip.preprocess, clip.tokenizer
        self.device = torch.device(clip.device)
        dtype = params.dtype
        if dtype == "auto":
            dtype = "float16" if self.device.type == "cuda" else "float32"
        self.dtype = getattr(torch, dtype)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        import torch

        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def text_embedding(self, prompt: str) -> torch.Tensor:
        """(D,) L2-normalised float32 embedding of `prefix + prompt`."""
        import torch
        import torch.nn.functional as F

        tokens = self.tokenizer([self.params.prefix + prompt]).to(self.device)
        with torch.no_grad(), self._autocast():
            features = self.model.encode_text(tokens)
        return F.normalize(features.float(), dim=-1)[0]

    def image_embeddings(self, images: list[Image]) -> tuple[torch.Tensor, int]:
        """(len(images), D) L2-normalised float32 embeddings, and the forward passes it took."""
        import torch
        import torch.nn.functional as F

        out = []
        for start in range(0, len(images), self.params.batch_size):
            chunk = images[start : start + self.params.batch_size]
            pixels = torch.stack([self.preprocess(image.convert("RGB")) for image in chunk]).to(self.device)
            with torch.no_grad(), self._autocast():
                features = self.model.encode_image(pixels)
            out.append(F.normalize(features.float(), dim=-1))
        return torch.cat(out), len(out)

    def score(self, prompt: str, images: list[Image], previews: list[list[Image]] | None) -> list[VerifierScore]:
        if not images:
            return []
        started = time.perf_counter()
        text = self.text_embedding(prompt)
        features, passes = self.image_embeddings(images)
        cosines = (features @ text).cpu().tolist()
        seconds = (time.perf_counter() - started) / len(images)
        return [VerifierScore(self.params.scale * max(cos, 0.0), cost=Cost(forward_passes=k, seconds=seconds),
                              details={"cosine": cos})
                for cos, k in zip(cosines, spread(passes + 1, len(images)), strict=True)]
