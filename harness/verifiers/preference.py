"""Human-preference reward models as verifiers: `pickscore` and `hpsv2`.

Both are CLIP models fine-tuned on human choices between images of one prompt, and both score
an image by the similarity of its embedding with the prompt's:

    pickscore  exp(logit_scale) * cos(E_image, E_text)       (Kirstain et al. 2023, PickScore_v1)
    hpsv2      cos(E_image, E_text)                           (Wu et al. 2023, HPS v2 / v2.1)

PickScore, as its README computes it: transformers `CLIPModel` (yuvalkirstain/PickScore_v1) with
the processor of laion/CLIP-ViT-H-14-laion2B-s32B-b79K; the text padded and truncated to 77
tokens; `get_image_features` / `get_text_features` divided by their norms; the score is
`logit_scale.exp() * text @ image` (the README's softmax over a prompt's images is only a
normalisation of these and is not taken: best-of-n needs the scores). The image processor is
transformers' PIL backend (PIL bicubic resize of the shortest edge, centre crop, OpenAI mean/std),
the one the README's transformers 4.27 ran; transformers 5 defaults to a torchvision backend,
whose resize rounds differently.

HPS v2, as `hpsv2/img_score.py` computes it: open_clip `ViT-H-14` (GELU) with the HPS checkpoint's
`state_dict` (it replaces every weight, so the laion weights are not needed), the image through
HPS's own validation transform (`light_augmentation=True`: RGB, `ToTensor`, `ResizeMaxSize` = scale
the longer side to 224 with bicubic on the tensor, pad with 0 to 224 x 224 centred (left/top get
the floor half), then normalise), the prompt through open_clip's tokenizer, and the score the dot
product of the model's normalised features (`logits_per_image` without logit scale). Where we
differ, on purpose: the reference runs under CUDA autocast; here "auto" is fp16 autocast on CUDA
and fp32 on CPU. Its tensor resize runs with torchvision's current default, antialiasing on (since
torchvision 0.17; the reference pins no version). An RGBA image is converted to RGB (the reference
keeps the alpha channel, which its model cannot take).

Weights are located, never downloaded (`harness.weights`): PickScore's model and processor as
folders or hub ids in the HF cache; HPS's checkpoint file (HPS_v2_compressed.pt or
HPS_v2.1_compressed.pt, by `version`) as a file, a folder holding it, or the hub repo xswu/HPSv2
in the HF cache.

Per call (one prompt): the text is encoded once, the images in batches of `batch_size`. Cost:
the call's forward passes (image batches + 1 text pass) spread over its candidates as whole
numbers, and the call's seconds shared evenly (as `clipscore`).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from harness.plugins import Cost, VerifierScore, param
from harness.weights import WeightsSpec

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

__all__ = ["HPS_FILES", "HpsV2Params", "HpsV2Verifier", "PickScoreParams", "PickScoreVerifier", "hps_pixels"]

PICKSCORE_MODEL = "yuvalkirstain/PickScore_v1"
PICKSCORE_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
PICKSCORE_SPEC = WeightsSpec("PickScore model", PICKSCORE_MODEL, files=("config.json",))
PICKSCORE_PROCESSOR_SPEC = WeightsSpec("PickScore processor (CLIP-H)", PICKSCORE_PROCESSOR,
                                       files=("preprocessor_config.json", "tokenizer_config.json"), weights=False)
MAX_LOGIT_SCALE = 100.0  # CLIP clamps exp(logit_scale) at 100 in training: |PickScore| <= 100
HPS_REPO = "xswu/HPSv2"
HPS_FILES = {"v2.0": "HPS_v2_compressed.pt", "v2.1": "HPS_v2.1_compressed.pt"}  # hpsv2/utils.py hps_version_map
HPS_ARCH = "ViT-H-14"


def _device_and_dtype(device: str | None, dtype: str) -> tuple[Any, Any]:
    import torch

    from harness.devices import pick_device

    chosen = torch.device(pick_device(device))
    if dtype == "auto":
        dtype = "float16" if chosen.type == "cuda" else "float32"
    return chosen, getattr(torch, dtype)


def _autocast(device: Any, dtype: Any) -> contextlib.AbstractContextManager[Any]:
    import torch

    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _scored(values: list[float], passes: int, started: float, details: list[dict[str, Any]]) -> list[VerifierScore]:
    from harness.verifiers.clipscore import spread

    seconds = (time.perf_counter() - started) / len(values)
    return [VerifierScore(v, cost=Cost(forward_passes=k, seconds=seconds), details=d)
            for v, k, d in zip(values, spread(passes, len(values)), details, strict=True)]


# ---------------------------------------------------------------------------------------------
# PickScore


@dataclass(frozen=True, kw_only=True)
class PickScoreParams:
    model: str = param(PICKSCORE_MODEL, help="PickScore weights (transformers CLIPModel): a local folder or a hub "
                                             "id in the HF cache.")
    processor: str = param(PICKSCORE_PROCESSOR, help="The processor PickScore's README uses (CLIP-H's): a local "
                                                     "folder or a hub id in the HF cache.")
    batch_size: int = param(32, help="Images per forward pass.")
    device: str | None = param(None, help="Torch device; default cuda when available, else cpu.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = param(
        "auto", help="Compute dtype (autocast over fp32 weights); auto = float16 on CUDA, float32 elsewhere.")


def _features(output: Any) -> torch.Tensor:
    """get_*_features' projected embeddings: a tensor (transformers 4) or the output's pooler_output (5)."""
    import torch

    return output if isinstance(output, torch.Tensor) else output.pooler_output


class PickScoreVerifier:
    """PickScore: logit scale x cosine of PickScore's CLIP image and prompt embeddings."""

    Params: ClassVar[type] = PickScoreParams
    description: ClassVar[str] = ("PickScore (Pick-a-Pic): exp(logit_scale) x cosine of the PickScore CLIP-H "
                                  "image and prompt embeddings, higher = preferred by people.")
    needs_previews: ClassVar[bool] = False
    score_range: ClassVar[tuple[float, float]] = (-MAX_LOGIT_SCALE, MAX_LOGIT_SCALE)

    def __init__(self, params: PickScoreParams) -> None:
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        from harness.weights import locate

        if params.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {params.batch_size}")
        self.params = params
        model_dir = locate(params.model, PICKSCORE_SPEC)
        processor_dir = locate(params.processor, PICKSCORE_PROCESSOR_SPEC)
        self.device, self.dtype = _device_and_dtype(params.device, params.dtype)
        # The PIL backend: what the README's transformers (4.27) preprocessed with.
        self.image_processor = AutoImageProcessor.from_pretrained(processor_dir, backend="pil", local_files_only=True)
        self.tokenizer = AutoTokenizer.from_pretrained(processor_dir, local_files_only=True)
        self.model = CLIPModel.from_pretrained(model_dir, local_files_only=True).to(self.device).eval()
        scale = float(self.model.logit_scale.detach().exp())
        if not scale <= MAX_LOGIT_SCALE:
            raise ValueError(f"{params.model}: exp(logit_scale) is {scale:.4g}, above CLIP's {MAX_LOGIT_SCALE:g}; "
                             "PickScore's scores would leave their declared range")

    def pixels(self, images: list[Image]) -> torch.Tensor:
        """(N, 3, H, W) pixel values, as the README's `processor(images=...)` makes them."""
        return self.image_processor(images=[im.convert("RGB") for im in images], return_tensors="pt")["pixel_values"]

    def text_embedding(self, prompt: str) -> torch.Tensor:
        import torch

        inputs = self.tokenizer(prompt, padding=True, truncation=True, max_length=77, return_tensors="pt")
        with torch.no_grad(), _autocast(self.device, self.dtype):
            features = _features(self.model.get_text_features(**inputs.to(self.device))).float()
        return features / torch.norm(features, dim=-1, keepdim=True)

    def score(self, prompt: str, images: list[Image], previews: list[list[Image]] | None) -> list[VerifierScore]:
        import torch

        if not images:
            return []
        started = time.perf_counter()
        text = self.text_embedding(prompt)
        cosines: list[float] = []
        batches = 0
        for start in range(0, len(images), self.params.batch_size):
            pixels = self.pixels(images[start:start + self.params.batch_size]).to(self.device)
            with torch.no_grad(), _autocast(self.device, self.dtype):
                features = _features(self.model.get_image_features(pixel_values=pixels)).float()
            features = features / torch.norm(features, dim=-1, keepdim=True)
            cosines.extend((text @ features.T)[0].cpu().tolist())
            batches += 1
        scale = float(self.model.logit_scale.detach().exp())
        return _scored([scale * c for c in cosines], batches + 1, started, [{"cosine": c} for c in cosines])


# ---------------------------------------------------------------------------------------------
# HPS v2


@dataclass(frozen=True, kw_only=True)
class HpsV2Params:
    checkpoint: str = param(HPS_REPO, help="The HPS checkpoint: the .pt file, a folder holding it, or the hub "
                                           "repo id in the HF cache.")
    version: Literal["v2.0", "v2.1"] = param("v2.1", help="HPS version: v2.1 (HPS_v2.1_compressed.pt) or v2.0 "
                                                          "(HPS_v2_compressed.pt); scores of the two don't compare.")
    arch: str = param(HPS_ARCH, help="open_clip architecture the checkpoint is for (HPS: ViT-H-14).")
    batch_size: int = param(32, help="Images per forward pass.")
    device: str | None = param(None, help="Torch device; default cuda when available, else cpu.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = param(
        "auto", help="Compute dtype (autocast over fp32 weights); auto = float16 on CUDA, float32 elsewhere.")


def hps_checkpoint(checkpoint: str, version: str) -> Path:
    """The checkpoint file: `checkpoint` itself when it is a file, else the version's file in the folder or
    HF-cache repo `checkpoint` names (MissingWeightsError, with how to fetch it, when absent)."""
    from harness.weights import locate

    path = Path(checkpoint).expanduser()
    if path.is_file():
        return path
    name = HPS_FILES[version]
    folder = locate(checkpoint, WeightsSpec(f"HPS {version}", HPS_REPO, files=(name,), weights=False))
    return folder / name


def hps_pixels(image: Image, size: int, mean: Any, std: Any) -> torch.Tensor:
    """(3, size, size) float32: HPS's validation transform (`image_transform(..., resize_longest_max=True)`):
    RGB, to a [0, 1] tensor, longer side scaled to `size` (bicubic, on the tensor), zero padding to a
    centred square, then normalised by `mean` / `std`."""
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    tensor = TF.to_tensor(image.convert("RGB"))
    height, width = tensor.shape[1:]
    scale = size / float(max(height, width))
    if scale != 1.0:
        new = [round(height * scale), round(width * scale)]
        tensor = TF.resize(tensor, new, interpolation=InterpolationMode.BICUBIC, antialias=True)
        pad_h, pad_w = size - new[0], size - new[1]
        tensor = TF.pad(tensor, [pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2], fill=0)
    return TF.normalize(tensor, list(mean), list(std))


class HpsV2Verifier:
    """HPS v2: cosine of the HPS-tuned open_clip ViT-H-14 image and prompt embeddings."""

    Params: ClassVar[type] = HpsV2Params
    description: ClassVar[str] = ("HPS v2/v2.1 (Human Preference Score): cosine of the HPS-tuned open_clip ViT-H-14 "
                                  "image and prompt embeddings.")
    needs_previews: ClassVar[bool] = False
    score_range: ClassVar[tuple[float, float]] = (-1.0, 1.0)

    def __init__(self, params: HpsV2Params) -> None:
        import open_clip

        from harness.weights import MissingWeightsError, load_state_dict, state_fit_problems

        if params.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {params.batch_size}")
        self.params = params
        path = hps_checkpoint(params.checkpoint, params.version)
        sidecar = path.parent / f"{params.arch}.json"  # a custom arch's config beside its checkpoint (tests)
        if params.arch not in open_clip.list_models() and sidecar.is_file():
            open_clip.add_model_config(sidecar)
        if params.arch not in open_clip.list_models():
            raise ValueError(f"open_clip has no architecture {params.arch!r}")
        self.device, self.dtype = _device_and_dtype(params.device, params.dtype)
        model = open_clip.create_model(params.arch, pretrained=None, device="cpu")
        state = load_state_dict([path])
        expected = model.state_dict()
        problems = state_fit_problems(expected, state)
        if problems:
            raise MissingWeightsError(f"{path}: not an HPS checkpoint for open_clip {params.arch}: "
                                      f"{'; '.join(problems)}")
        model.load_state_dict(state)
        self.model = model.to(self.device).eval()
        self.tokenizer = open_clip.get_tokenizer(params.arch)
        visual = self.model.visual
        size = visual.image_size
        self.size = int(size[0] if isinstance(size, tuple | list) else size)
        # HPS's factory normalises by the visual tower's mean/std when set, else OpenAI's (open_clip's default)
        self.mean = getattr(visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN
        self.std = getattr(visual, "image_std", None) or open_clip.OPENAI_DATASET_STD
        self.checkpoint = path

    def pixels(self, images: list[Image]) -> torch.Tensor:
        import torch

        return torch.stack([hps_pixels(image, self.size, self.mean, self.std) for image in images])

    def score(self, prompt: str, images: list[Image], previews: list[list[Image]] | None) -> list[VerifierScore]:
        import torch

        if not images:
            return []
        started = time.perf_counter()
        tokens = self.tokenizer([prompt]).to(self.device)
        with torch.no_grad(), _autocast(self.device, self.dtype):
            text = self.model.encode_text(tokens, normalize=True).float()
        values: list[float] = []
        batches = 0
        for start in range(0, len(images), self.params.batch_size):
            pixels = self.pixels(images[start:start + self.params.batch_size]).to(self.device)
            with torch.no_grad(), _autocast(self.device, self.dtype):
                features = self.model.encode_image(pixels, normalize=True).float()
            values.extend((features @ text.T)[:, 0].cpu().tolist())
            batches += 1
        return _scored(values, batches + 1, started, [{} for _ in values])
