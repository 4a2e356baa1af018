"""GenEval 2's reference evaluation loop, rewritten for comparison (tests and benchmarks only).

`evaluation.py` (facebookresearch/GenEval2) asks Qwen3-VL one question at a time: the message
`[{"role": "user", "content": [{"type": "image", "image": PATH}, {"type": "text", "text": TEXT}]}]`
through `processor.apply_chat_template(tokenize=True, add_generation_prompt=True, return_dict=True)`,
then `model.generate(max_new_tokens=1, do_sample=False, output_scores=True, return_dict_in_generate=True)`;
the answer's probability is the sum over its variants of `softmax(scores[0])[0, encode(variant)[0]]`
and the prediction is `processor.batch_decode([argmax])[0]`. This module does exactly that, so the
batched engine (`harness.verifiers.answer_probs`) can be checked against it and timed beside it;
`stepwise eval` never uses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.geneval2.soft_tifa import YES_VARIANTS, answer_variants, question_text, vqascore_text


def send_message_with_image(model: Any, processor: Any, text: str, image: str | Path | Any,
                            answer_list: Sequence[str] | None) -> tuple[str, float | None]:
    """evaluation.py `send_message_with_image`: (decoded argmax first token, summed variant probability)."""
    import torch

    messages = [{"role": "user", "content": [{"type": "image", "image": str(image) if isinstance(image, Path)
                                               else image}, {"type": "text", "text": text}]}]
    inputs = processor.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=True,
                                           return_tensors="pt")
    inputs = inputs.to(model.device)
    with torch.inference_mode():
        outputs = model.generate(**inputs, max_new_tokens=1, do_sample=False, output_scores=True,
                                 return_dict_in_generate=True)
    probs = torch.nn.functional.softmax(outputs.scores[0], dim=-1)
    lm_prob: float | None = None
    if answer_list:
        lm_prob = 0
        for answer in answer_list:
            lm_prob += probs[0, processor.tokenizer.encode(answer)[0]].item()
    pred = processor.batch_decode([torch.argmax(probs)])[0]
    return pred, lm_prob


def reference_scores(model: Any, processor: Any, vqa_list: Sequence[Sequence[str]],
                     image: str | Path | Any) -> tuple[list[float], list[int]]:
    """evaluation.py `soft_tifa` and `tifa` score lists for one image (one generate per question, shared
    by both, since they ask the same question)."""
    soft: list[float] = []
    hard: list[int] = []
    for question, answer in vqa_list:
        variants = answer_variants(question, answer)
        pred, prob = send_message_with_image(model, processor, question_text(question), image, variants)
        assert prob is not None
        soft.append(prob)
        hard.append(1 if pred.lower() in variants else 0)
    return soft, hard


def reference_vqascore(model: Any, processor: Any, prompt: str, image: str | Path | Any) -> float:
    """evaluation.py `vqa_score`."""
    _, prob = send_message_with_image(model, processor, vqascore_text(prompt), image, YES_VARIANTS)
    assert prob is not None
    return prob
