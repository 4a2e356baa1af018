"""`make demo`: the main job end to end on a fresh machine.

1. write GenEval's prompt suite;
2. draw a small GenEval-layout image folder (a few prompts of every task);
3. evaluate it with both detector backends (the real weights when they are in the local
   HF cache, otherwise tiny random-weight models of the same classes);
4. print GenEval's summary, then re-score the stored detections with other thresholds;
5. generate the same prompts with Show-o (`stepwise generate`, step previews included: real
   weights from the HF cache, else a tiny random Show-o) and evaluate those images too;
6. the main job: `stepwise run` builds a candidate pool (Show-o, one prompt per task after
   GenEval's 80 single objects, 4 candidates each) judged by GenEval and scored by two verifiers
   (the ORM on a VLM, CLIPScore), `stepwise curve` computes the exact best-of-n curves, `stepwise
   analyze` compares the two verifiers (AUROC, calibration, regret vs the oracle, agreement),
   `stepwise submit` turns the run into a leaderboard entry, and `stepwise leaderboard build`
   writes the static site with the shipped reported entries plus this one (and its Verifiers page).

Tiny random-weight models are labelled as such in every name they reach (entry name, site):
their scores measure nothing. The real recipe for GPUs is in README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

PROMPTS_PER_TASK = 2
IMAGES_PER_PROMPT = 2
COLOR_RGB = {"red": (220, 30, 30), "orange": (240, 140, 20), "yellow": (240, 220, 30),
             "green": (40, 170, 60), "blue": (40, 80, 220), "purple": (130, 50, 170),
             "pink": (240, 130, 180), "brown": (120, 70, 30), "black": (20, 20, 20),
             "white": (245, 245, 245)}


def stepwise(*args: str) -> None:
    """Run one `stepwise` command as a user would, echoing it first."""
    command = [str(Path(sys.executable).with_name("stepwise")), *args]
    print(f"\n$ stepwise {shlex.join(args)}", flush=True)
    subprocess.run(command, check=True)


def draw_sample(metadata: dict, rng: np.random.Generator, size: int = 256) -> Image.Image:
    """A stand-in for a generated image: one shape per requested object, in its colour."""
    image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(90, 170, 3)))
    draw = ImageDraw.Draw(image)
    for req in metadata["include"]:
        for _ in range(req["count"]):
            w, h = (int(v) for v in rng.integers(size // 6, size // 3, 2))
            x, y = (int(v) for v in rng.integers(0, size - max(w, h), 2))
            fill = COLOR_RGB.get(req.get("color", ""), tuple(int(v) for v in rng.integers(0, 255, 3)))
            draw.ellipse([x, y, x + w, y + h], fill=fill)
    return image


def write_image_folder(metadata_path: Path, out_dir: Path) -> list[int]:
    samples = [json.loads(line) for line in metadata_path.read_text().splitlines()]
    chosen, per_tag = [], {}
    for index, sample in enumerate(samples):
        if per_tag.get(sample["tag"], 0) < PROMPTS_PER_TASK:
            per_tag[sample["tag"]] = per_tag.get(sample["tag"], 0) + 1
            chosen.append((index, sample))
    rng = np.random.default_rng(0)
    for index, sample in chosen:
        folder = out_dir / f"{index:05d}"
        (folder / "samples").mkdir(parents=True, exist_ok=True)
        (folder / "metadata.jsonl").write_text(json.dumps(sample) + "\n")
        for k in range(IMAGES_PER_PROMPT):
            draw_sample(sample, rng).save(folder / "samples" / f"{k:04d}.png")
    return [index for index, _ in chosen]


def model_flags(models_dir: Path) -> tuple[dict[str, list[str]], str]:
    """Evaluator flags per backend: real weights when found locally, tiny models otherwise."""
    from harness.geneval.backends.hf_backend import hf_status
    from harness.geneval.colors import clip_status

    hf_ok, _ = hf_status("facebook/mask2former-swin-small-coco-instance")
    clip_ok, _ = clip_status()
    flags: dict[str, list[str]] = {}
    if hf_ok and clip_ok:
        note = "real weights from the local Hugging Face cache"
        flags["hf"] = ["--backend", "hf"]
        clip: list[str] = []
    else:
        from harness.tiny.clip import write_tiny_clip
        from harness.tiny.hf_detector import write_tiny_hf_detector

        note = ("TINY RANDOM-WEIGHT models (no real weights in the local HF cache): every code path "
                "runs, but the verdicts are meaningless")
        arch, clip_weights = write_tiny_clip(models_dir / "clip")
        clip = ["--clip-arch", arch, "--clip-weights", str(clip_weights)]
        flags["hf"] = ["--backend", "hf", "--detector", str(write_tiny_hf_detector(models_dir / "hf"))]
    mmdet_checkpoint = os.environ.get("STEPWISE_MMDET_CHECKPOINT")
    try:
        if mmdet_checkpoint:
            flags["mmdet"] = ["--backend", "mmdet", "--detector", mmdet_checkpoint]
        else:
            from harness.tiny.mmdet_detector import write_tiny_mmdet

            config, checkpoint = write_tiny_mmdet(models_dir / "mmdet")
            flags["mmdet"] = ["--backend", "mmdet", "--detector", str(checkpoint),
                              "--detector-config", str(config)]
    except ImportError as err:
        print(f"note: skipping the mmdet backend ({err})")
    return {name: [*f, *clip] for name, f in flags.items()}, note


def showo_params(models_dir: Path) -> tuple[list[str], str]:
    """`--param` flags for the showo generator: the real checkpoints when cached, else a tiny random one."""
    from harness.generators.showo.magvit import MAGVIT_WEIGHTS
    from harness.generators.showo.model import LLM_WEIGHTS, SHOWO_WEIGHTS
    from harness.weights import MissingWeightsError, locate

    try:
        for spec in (SHOWO_WEIGHTS, MAGVIT_WEIGHTS, LLM_WEIGHTS):
            locate(spec.default_repo, spec)
        return [], "showlab/show-o + showlab/magvitv2 from the local Hugging Face cache"
    except MissingWeightsError:
        from harness.tiny.magvit import TINY_MAGVIT_IMAGE_SIZE, write_tiny_magvit
        from harness.tiny.showo import write_tiny_showo

        showo = write_tiny_showo(models_dir / "showo")
        magvit = write_tiny_magvit(models_dir / "magvit")
        flags = ["--param", f"model={showo}", "--param", f"vq_model={magvit}",
                 "--param", f"resolution={TINY_MAGVIT_IMAGE_SIZE}"]
        return flags, ("a TINY RANDOM-WEIGHT Show-o (no real weights in the local HF cache): "
                       f"{TINY_MAGVIT_IMAGE_SIZE} px noise images, every code path runs")


def run_stepwise_output(*args: str) -> str:
    """Like `stepwise`, and return the command's standard output (the run id, for `stepwise run`)."""
    command = [str(Path(sys.executable).with_name("stepwise")), *args]
    print(f"\n$ stepwise {shlex.join(args)}", flush=True)
    return subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout


def vlm_model(models_dir: Path) -> tuple[str, bool]:
    """The ORM's VLM: always the tiny random LLaVA-OneVision here (a 7B VLM on CPU takes hours)."""
    from harness.tiny.vlm import write_tiny_llava_onevision

    return str(write_tiny_llava_onevision(models_dir / "vlm")), True


def main_job(out: Path, generator_flags: list[str], hf_flags: list[str], tiny: bool) -> None:
    """Pool -> verdicts and verifier scores -> curves -> leaderboard entry -> static site."""
    vlm, vlm_tiny = vlm_model(out / "models")
    clip = [hf_flags[i + 1] for i, flag in enumerate(hf_flags) if flag in ("--clip-arch", "--clip-weights")]
    verifier_params = ["--verifier-param", f"orm:model={vlm}"]
    if clip:
        verifier_params += ["--verifier-param", f"clipscore:arch={clip[0]}",
                            "--verifier-param", f"clipscore:weights={clip[1]}"]
    verifiers = ["--verifier", "orm", "--verifier", "clipscore"]
    db = f"sqlite:///{out / 'store.db'}"
    output = run_stepwise_output("run", "--generator", "showo", *generator_flags, "--per-task", "1", "--pool", "4",
                                 *verifiers, *verifier_params, "--db", db, "--out", str(out / "run"), *hf_flags)
    run_id = output.strip().splitlines()[-1]
    stepwise("curve", "--run", run_id, "--db", db, *verifiers, *verifier_params, "--n", "1..4",
             "--plot", str(out / "curve.svg"), *hf_flags)
    label = " (TINY RANDOM WEIGHTS: the scores measure nothing)" if tiny or vlm_tiny else ""
    stepwise("analyze", "--run", run_id, "--db", db, *verifiers, *verifier_params, "--json", str(out / "analysis.json"),
             "--plot", str(out / "analysis"), "--label", f"Show-o x GenEval pool of the demo{label}", *hf_flags)
    submissions = out / "submissions"
    if submissions.exists():
        shutil.rmtree(submissions)
    shutil.copytree(Path(__file__).resolve().parents[1] / "submissions", submissions)
    stepwise("submit", run_id, "--name", f"Demo: Show-o + ORM, best-of-4{label}", "--slug", "demo-showo-orm",
             "--db", db, *verifiers, *verifier_params, "--n", "4", "--out", str(submissions),  # orm selects
             "--description", "Made by `make demo`: a small pool through the whole harness.", *hf_flags)
    # Re-checked with the same (tiny or real) models: their folders are where the export's names are found.
    local = [hf_flags[i + 1] for i, flag in enumerate(hf_flags) if flag in ("--detector", "--clip-weights")] + [vlm]
    models = [a for folder in sorted({str(Path(p).parent) for p in local if Path(p).exists()})
              for a in ("--models", folder)]
    stepwise("validate", str(submissions / "demo-showo-orm"), *models)
    stepwise("leaderboard", "build", "--submissions", str(submissions), "--out", str(out / "site"), *models)
    print(f"\nthe site: {(out / 'site' / 'index.html').resolve().as_uri()}  "
          f"(or `stepwise leaderboard serve --out {out / 'site'}`)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo-out"))
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    stepwise("prompts", "geneval", "-o", str(out / "prompts"))
    prompts = write_image_folder(out / "prompts" / "evaluation_metadata.jsonl", out / "images")
    print(f"drew {len(prompts) * IMAGES_PER_PROMPT} images into {out / 'images'} (GenEval layout)")

    flags, note = model_flags(out / "models")
    print(f"\nmodels: {note}")
    cache = ["--cache", str(out / "verdicts.sqlite")]
    for backend, backend_flags in flags.items():
        results = out / f"results-{backend}.jsonl"
        stepwise("eval", str(out / "images"), "-o", str(results), *backend_flags, "--colors", "all", *cache)
        stepwise("summary", str(results))
    # Second run: every verdict comes from the cache, no model is loaded.
    stepwise("eval", str(out / "images"), "-o", str(out / "results-hf.jsonl"), *flags["hf"],
             "--colors", "all", *cache)
    # Re-judge the stored detections with lower thresholds: no model needed.
    stepwise("rescore", str(out / "results-hf.jsonl"), "-o", str(out / "rescored-hf.jsonl"),
             "--threshold", "0.02", "--counting-threshold", "0.02")
    stepwise("summary", str(out / "rescored-hf.jsonl"))

    generator_flags, generator_note = showo_params(out / "models")
    print(f"\ngenerator: {generator_note}")
    stepwise("generate", "--generator", "showo", *generator_flags, "--prompts", ",".join(map(str, prompts)),
             "--n", str(IMAGES_PER_PROMPT), "--previews", "-o", str(out / "showo"))
    stepwise("eval", str(out / "showo"), "-o", str(out / "results-showo-hf.jsonl"), *flags["hf"], *cache)
    stepwise("summary", str(out / "results-showo-hf.jsonl"))

    print("\nthe main job: pool, verdicts, verifier scores, curves, leaderboard entry, site")
    main_job(out, generator_flags, flags["hf"], tiny=bool(generator_flags))
    print(f"\ndone: results, summaries and models are in {out}/  ({note.split(':')[0]})")


if __name__ == "__main__":
    main()
