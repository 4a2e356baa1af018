"""VQAScore (Lin et al., 2024, "Evaluating Text-to-Visual Generation with Image-to-Text Generation").

    score = P("Yes" | image, 'Does this figure show "{prompt}"? Please answer yes or no.')

the probability of the answer token "Yes" as the first token a VLM answers, read from one forward
pass through the yes/no engine (`harness.verifiers.engine`), every candidate of a prompt batched.
The question and the answer token are the reference code's defaults (linzhiqiu/t2v_metrics,
`default_question_template`, `default_answer_template`); both are parameters.

The substitution, on purpose: the paper's VQAScore model is CLIP-FlanT5 (zhiqiulin/clip-flant5-xxl,
an encoder-decoder with a CLIP vision tower), which transformers cannot load. Here any
image-text-to-text chat model answers instead; the default is LLaVA-OneVision-7B, which t2v_metrics
also ships as a VQAScore model (`llava-onevision-qwen2-7b-ov`). Its input there is the `qwen_1_5`
conversation with "<image>\\n" before the question, which `layout=pad` reproduces (with LLaVA's
one padded tile as the image; t2v_metrics' wrapper preprocesses with the checkpoint's anyres
setting, closer to `layout=native`). Other models (Qwen2-VL, Qwen2.5-VL, ...) take `layout=native`:
their processor's chat template with the image item, then the question. CLIP-FlanT5 scores the
answer "Yes" as exp(-mean token loss) of its label sequence; a decoder-only VLM's first-token
softmax is what t2v_metrics reads for those models, as here.

Cost: one forward pass per candidate; each engine call's seconds shared evenly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from harness.plugins import Cost, VerifierScore, param

if TYPE_CHECKING:
    from PIL.Image import Image

    from harness.verifiers.engine import YesNoEngine

__all__ = ["DEFAULT_ANSWER", "DEFAULT_MODEL", "DEFAULT_QUESTION", "VqaScoreParams", "VqaScoreVerifier",
           "vqascore_question"]

DEFAULT_MODEL = "llava-hf/llava-onevision-qwen2-7b-ov-hf"
DEFAULT_QUESTION = 'Does this figure show "{}"? Please answer yes or no.'  # t2v_metrics default_question_template
DEFAULT_ANSWER = "Yes"  # t2v_metrics default_answer_template
IMAGE_PREFIX = "<image>\n"  # t2v_metrics: DEFAULT_IMAGE_TOKEN + "\n" + question


def vqascore_question(template: str, prompt: str) -> str:
    """The question turn for `prompt`: "<image>\\n" then `template` with the prompt in place of "{}"."""
    if template.count("{}") != 1:
        raise ValueError(f"the VQAScore question template must hold '{{}}' exactly once (where the prompt goes), "
                         f"got {template!r}")
    return IMAGE_PREFIX + template.replace("{}", prompt)


@dataclass(frozen=True, kw_only=True)
class VqaScoreParams:
    model: str = param(DEFAULT_MODEL, help="The VLM (transformers image-text-to-text weights): a local folder or a "
                                           "hub id in the HF cache. CLIP-FlanT5 is not in transformers.")
    layout: Literal["pad", "native"] = param("pad", help="pad: LLaVA's qwen_1_5 conversation and one padded tile "
                                                         "(LLaVA-OneVision only); native: the processor's own.")
    question: str = param(DEFAULT_QUESTION, help="The question; '{}' is where the prompt goes.")
    answer: str = param(DEFAULT_ANSWER, help="The answer token whose probability is the score (one token).")
    batch_size: int = param(20, help="Questions per VLM forward pass.")
    device: str | None = param(None, help="Torch device; default cuda when available, else cpu.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = param("auto", help="Model dtype; auto = float16 on "
                                                                                   "CUDA, float32 on CPU.")


class VqaScoreVerifier:
    """P(answer token) of a VLM asked whether the image shows the prompt."""

    Params: ClassVar[type] = VqaScoreParams
    description: ClassVar[str] = ("VQAScore: a VLM's P(\"Yes\") to 'Does this figure show \"{prompt}\"? Please "
                                  "answer yes or no.' (any transformers VLM in place of CLIP-FlanT5).")
    needs_previews: ClassVar[bool] = False
    score_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __init__(self, params: VqaScoreParams, *, engine: YesNoEngine | None = None) -> None:
        """Builds the engine (loads the weights). `engine`: a private hook for tests, used instead."""
        if params.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {params.batch_size}")
        vqascore_question(params.question, "")  # a template without its '{}' is refused before loading
        self.params = params
        if engine is None:
            from harness.verifiers.engine import YesNoEngine

            engine = YesNoEngine(params.model, layout=params.layout, device=params.device, dtype=params.dtype,
                                 batch_size=params.batch_size, yes_token=params.answer,
                                 no_token=_negative(params.answer))
        self.engine = engine

    @staticmethod
    def score_probability(score: float) -> float | None:
        """The score is P(answer) itself: the probability the candidate shows the prompt."""
        return score

    def score(self, prompt: str, images: list[Image], previews: list[list[Image]] | None) -> list[VerifierScore]:
        from harness.verifiers.engine import Turn, YesNoQuery

        if not images:
            return []
        turns = (Turn("user", vqascore_question(self.params.question, prompt)),)
        started = time.perf_counter()
        answers = self.engine.answer([YesNoQuery(turns, image) for image in images])
        seconds = (time.perf_counter() - started) / len(images)
        return [VerifierScore(a.p_yes, cost=Cost(forward_passes=1, seconds=seconds),
                              details={"p_yes": a.p_yes, "p_no": a.p_no, "answer": a.argmax_answer()})
                for a in answers]


def _negative(answer: str) -> str:
    """The "no" token matching the answer's case ("Yes" -> "No", "yes" -> "no"), kept as details' p_no."""
    return "No" if answer[:1].isupper() else "no"
