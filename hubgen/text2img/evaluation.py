"""The text-to-image evaluation: prompt accuracy per guidance scale on training and held-out templates, sample
quality per guidance scale, and the pictures of the card (the digit grid, the guidance sweep).

Prompt accuracy needs a judge: a model trained on digit labels (captions from the digit templates) is judged by
the frozen digit classifier. A model trained on a dataset's own free-text captions has none here: its
evaluation reports sample quality only (samples prompted with the evaluation split's captions) and says that
prompt accuracy was not measured.

    hubgen eval out/t2i --num_samples 200 --guidance_scales 1 2 3 5 --sampler dpmsolver++
"""

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..draws import randn_tensor
from ..errors import UserInputError
from ..model_folder import recorded_dataset
from ..registry import EvalRequest, EvalResult
from . import captions as cap

__all__ = [
    "Text2ImageEvalRequest",
    "evaluate",
    "digit_grid",
    "prompt_grid",
    "guidance_sweep",
    "validation_prompts",
    "EVAL_GUIDANCE_SCALES",
    "REFERENCE_GUIDANCE",
    "SWEEP_GUIDANCE_SCALES",
]

EVAL_GUIDANCE_SCALES = (1.0, 2.0, 3.0, 5.0)
REFERENCE_GUIDANCE = 3.0  # the card's headline figures and the sample grid
SWEEP_GUIDANCE_SCALES = (0.0, 1.0, 2.0, 3.0, 5.0, 8.0)
PIXEL_MODE = "continuous intensities scaled to [-1, 1]"
NOT_MEASURED = ("prompt accuracy: not measured (the model was trained on free-text captions and no judge scores "
                "whether an image shows its caption); sample quality only")  # fmt: skip


@dataclass
class Text2ImageEvalRequest(EvalRequest):
    """`num_samples` counts the images per template set and guidance scale (num_samples // 10 per digit; for a model
    trained on free-text captions, the images per guidance scale, prompted with the split's captions); 0 skips
    the figures (the guidance sweep is still drawn), None (`all`) takes as many as the split has images.

    The inherited `num_images` (test images scored for a likelihood) does not apply: a text-to-image model is
    judged by its samples only, so it is ignored; the result's `num_images` is the number of samples per set.
    """

    num_samples: int | None = field(default=200, metadata={
        "help": "samples per template set and guidance scale, num_samples // 10 per digit (0: skip)"})  # fmt: skip
    guidance_scales: tuple[float, ...] = field(default=EVAL_GUIDANCE_SCALES, metadata={
        "help": "classifier-free guidance scales w to evaluate (Ho & Salimans 2022)"})  # fmt: skip
    num_inference_steps: int | None = field(default=None, metadata={
        "help": "sampler steps; all (None): those of the training record, else 20", "max": 1000})  # fmt: skip
    sampler: str = field(default="dpmsolver++", metadata={"help": "the sampler, a name the pipeline's `sampler` takes"})

    def __post_init__(self):
        super().__post_init__()
        if self.num_samples is not None and 0 < self.num_samples < 10:
            raise UserInputError(f"`num_samples` must be >= 10 (one per digit at least), got {self.num_samples!r}.")
        scales = self.guidance_scales
        numbers = isinstance(scales, (tuple, list)) and all(isinstance(w, (int, float)) for w in scales)
        if not numbers or not scales or any(isinstance(w, bool) or not (math.isfinite(w) and w >= 0) for w in scales):
            raise UserInputError(f"`guidance_scales` must be a non-empty sequence of numbers >= 0, got {scales!r}.")
        self.guidance_scales = tuple(float(w) for w in scales)
        steps = self.num_inference_steps
        if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
            raise UserInputError(f"`num_inference_steps` must be an integer >= 1 or None, got {steps!r}.")
        if not isinstance(self.sampler, str) or not self.sampler:
            raise UserInputError(f"`sampler` must be a sampler name, got {self.sampler!r}.")


# -- pictures ------------------------------------------------------------------------------------------------------


def validation_prompts(record: dict) -> list[str]:
    """The prompts of a model's grids (samples.png, the guidance sweep): those its training record names, else the
    ten digit prompts "a handwritten digit zero" ... "nine"."""
    return list(record.get("validation_prompts") or [cap.digit_prompt(d) for d in range(10)])


def prompt_grid(pipe, prompts: list[str], per_prompt: int = 8, guidance_scale: float = REFERENCE_GUIDANCE,
                seed: int = 0, num_inference_steps: int = 20):  # fmt: skip
    """A len(prompts) x `per_prompt` grid: row i holds `per_prompt` samples for prompts[i]."""
    from ..pipeline_utils import card_grid

    images = pipe(list(prompts), num_images_per_prompt=per_prompt, guidance_scale=guidance_scale,
                  num_inference_steps=num_inference_steps, generator=torch.Generator().manual_seed(seed),
                  output_type="pt").images  # fmt: skip
    return card_grid(images, nrow=per_prompt)


def digit_grid(pipe, per_digit: int = 8, guidance_scale: float = REFERENCE_GUIDANCE, seed: int = 0,
               num_inference_steps: int = 20):  # fmt: skip
    """A 10 x `per_digit` grid: row d holds `per_digit` samples for the prompt "a handwritten digit <d>"."""
    return prompt_grid(pipe, validation_prompts({}), per_digit, guidance_scale, seed, num_inference_steps)


def guidance_sweep(pipe, scales=SWEEP_GUIDANCE_SCALES, seed: int = 0, num_inference_steps: int = 20, sampler=None,
                   prompts: list[str] | None = None):  # fmt: skip
    """Rows: the prompts (default: the ten digit prompts); columns: guidance scales, every column from the same
    initial noise."""
    from ..pipeline_utils import card_grid

    prompts = list(prompts or validation_prompts({}))
    c, s = pipe.unet.config.in_channels, pipe.unet.config.sample_size
    noise = randn_tensor((len(prompts), c, s, s), torch.Generator().manual_seed(seed))
    columns = [pipe(prompts, guidance_scale=w, num_inference_steps=num_inference_steps, sampler=sampler,
                    latents=noise, output_type="pt").images for w in scales]  # fmt: skip
    return card_grid(torch.stack(columns, dim=1).flatten(0, 1), nrow=len(scales))  # (P * S, C, H, W), row-major


# -- figures -------------------------------------------------------------------------------------------------------


def _sample(pipe, prompts: list[str], w: float, seed: int, steps: int, sampler: str, batch: int) -> torch.Tensor:
    """One image per prompt at guidance w, `batch` prompts per call, from one generator seeded `seed`: (n, C, H, W)."""
    generator = torch.Generator().manual_seed(seed)
    images = []
    for i in range(0, len(prompts), batch):
        images.append(pipe(prompts[i : i + batch], guidance_scale=w, num_inference_steps=steps, sampler=sampler,
                           generator=generator, output_type="pt").images.cpu())  # fmt: skip
    return torch.cat(images)


def _prompt_accuracy(pipe, classifier, templates, n: int, w: float, seed: int, steps: int, sampler: str, batch: int):
    """Sample n images (n // 10 per digit, templates cycling) at guidance w; classify them.
    Returns (images (n', C, H, W), requested labels (n',), predicted labels (n',))."""
    from ..metrics import extract

    per_digit = n // 10
    requested = np.repeat(np.arange(10), per_digit)  # (n',)
    prompts = [cap.caption(templates[i % len(templates)], d) for d in range(10) for i in range(per_digit)]
    images = _sample(pipe, prompts, w, seed, steps, sampler, batch)
    _, probs = extract(classifier, images)
    return images, requested, probs.argmax(axis=1)


@torch.no_grad()
def evaluate(folder, request: Text2ImageEvalRequest, pipeline=None, batch_size: int = 250) -> EvalResult:
    """Prompt accuracy and sample quality per guidance scale, and the guidance sweep.

    For each guidance scale w of `request.guidance_scales` and each template set (training, held-out),
    n = 10 * (num_samples // 10) images are drawn (n / 10 per digit, the set's templates cycling; `sampler` with
    `num_inference_steps` steps, by default those of the training record, else 20; seed `seed`, `seed` + 1 for
    the held-out templates) and labelled by the frozen digit classifier (hubgen.metrics.load_classifier for the
    image size). Prompt accuracy is the share labelled with the prompt's digit, overall and per digit, with its
    binomial standard error sqrt(a (1 - a) / n). The training-template samples of each w are also compared with
    the `split` of the dataset (hubgen.metrics.evaluate_samples): classifier Frechet distance,
    precision/recall/density/coverage, classes covered; the report at the reference w (3 when evaluated) is the
    result's sample quality, with its nearest-neighbour grid as a picture.

    A model trained on free-text captions (training record `captions.source` other than cap.DIGIT_CAPTIONS) gets no
    prompt accuracy (no judge; the result says so): for each w, n = num_samples images prompted with the split's
    captions in order (cycling; those longer than the model takes are skipped; the training record's validation
    prompts when the split has none), compared with the split by evaluate_samples as above. The guidance sweep
    shows the training record's validation prompts.
    """
    from .pipeline_text2img import Text2ImagePipeline

    folder = Path(folder)
    dataset, info = recorded_dataset(folder, request.dataset)
    steps = request.num_inference_steps or int(info.get("num_inference_steps", 20))
    pipe = pipeline or Text2ImagePipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    num_samples = request.num_samples
    if num_samples is None:
        num_samples = len(dataset.load(request.split))
    digits = (info.get("captions") or {}).get("source", cap.DIGIT_CAPTIONS) == cap.DIGIT_CAPTIONS
    n_per_set = 10 * (num_samples // 10) if digits else num_samples
    scales = list(request.guidance_scales)
    reference = REFERENCE_GUIDANCE if REFERENCE_GUIDANCE in scales else scales[0]
    result = EvalResult("text2img", request, str(dataset), request.split, n_per_set, request.seed,
                        info.get("pixel_mode", PIXEL_MODE))  # fmt: skip
    result.details = {"sampler": request.sampler, "num_inference_steps": steps, "guidance_scales": scales,
                      "reference_guidance_scale": reference, "num_samples_per_set": n_per_set,
                      "sweep_guidance_scales": list(SWEEP_GUIDANCE_SCALES)}  # fmt: skip
    result.pictures["guidance_sweep.png"] = guidance_sweep(pipe, seed=request.seed, num_inference_steps=steps,
                                                           sampler=request.sampler,
                                                           prompts=validation_prompts(info))  # fmt: skip
    if n_per_set and digits:
        _prompt_accuracy_and_quality(pipe, result, dataset, steps, reference, batch_size)
    elif n_per_set:
        _captioned_quality(pipe, result, dataset, steps, reference, batch_size, validation_prompts(info))
    return result


def _sample_quality(images: torch.Tensor, dataset, request: Text2ImageEvalRequest) -> dict:
    """hubgen.metrics.evaluate_samples of `images` against the request's split, in the request's feature network
    (`--feature_network`, e.g. a classifier trained on the coloured data) when it names one."""
    from ..metrics import evaluate_samples

    return evaluate_samples(images, dataset, seed=request.seed, reference_split=request.split,
                            feature_network=request.feature_network)  # fmt: skip


def _quality_row(result: EvalResult, quality: dict, w: float, reference: float, samples: str) -> dict:
    """evaluate_samples' report of the samples at guidance w: the result's sample quality (and nearest-neighbour
    grid) at the reference w; returns the figures of the guidance table's row."""
    pictures = quality.pop("pictures", {})
    quality["samples"] = samples
    if w == reference:
        result.sample_quality = quality
        result.pictures.update(pictures)  # the nearest-neighbour grid
    fd, prdc = quality.get("frechet_distance") or {}, quality.get("prdc") or {}
    row = {"frechet_distance": fd.get("value"), "floor": fd.get("floor_train_vs_test")}
    row.update({name: prdc.get(name) for name in ("precision", "recall", "density", "coverage")})
    row["classes_covered"] = (quality.get("modes") or {}).get("classes_covered")
    return row


def _quality_note(quality: dict) -> list[str]:
    fd, prdc = quality.get("frechet_distance") or {}, quality.get("prdc") or {}
    line = [f"{fd['name']} {fd['value']:.3f}"] if fd.get("value") is not None else ["FD not measured"]
    return line + ([f"coverage {prdc['coverage']:.3f}"] if prdc.get("coverage") is not None else [])


def _evaluation_prompts(pipe, dataset, split: str, fallback: list[str], n: int) -> tuple[list[str], str]:
    """n prompts for the quality samples of a captioned model: the captions of the split of `dataset` (a
    hubgen.data.DataSpec) in order (the first of an image's list; empty ones and those longer than the model takes
    skipped), cycling; else `fallback`. Returns them and where they came from."""
    captions = dataset.load(split).captions or []
    texts = [c if isinstance(c, str) else (c[0] if c else "") for c in captions]
    limit, tokenizer = pipe.max_prompt_length, pipe.tokenizer
    usable = [t for t, ids in zip(texts, tokenizer(texts).input_ids if texts else [], strict=True)
              if t.strip() and len(ids) <= limit]  # fmt: skip
    skipped = len(texts) - len(usable)
    source = f"the {split} split's captions in order"
    source += f" ({skipped} skipped: empty or longer than {limit} tokens)" if skipped else ""
    if not usable:
        usable, source = fallback, "the training record's validation prompts (the split has no usable caption)"
    return [usable[i % len(usable)] for i in range(n)], source


def _captioned_quality(pipe, result: EvalResult, dataset, steps: int, reference: float, batch: int,
                       fallback: list[str]):  # fmt: skip
    """Sample quality per guidance scale of a model trained on free-text captions, into `result`; no prompt
    accuracy (see `evaluate`)."""
    request, n = result.request, result.num_images
    prompts, source = _evaluation_prompts(pipe, dataset, request.split, fallback, n)
    sweep = []
    for w in result.details["guidance_scales"]:
        images = _sample(pipe, prompts, w, request.seed, steps, request.sampler, batch)
        quality = _sample_quality(images, dataset, request)
        samples = f"prompted with {source}, guidance {w:g}, {request.sampler} {steps} steps"
        sweep.append({"guidance_scale": w, **_quality_row(result, quality, w, reference, samples)})
        result.notes.append("   ".join([f"guidance {w:g}", *_quality_note(quality)]))
    result.notes.append(NOT_MEASURED)
    result.details.update(prompt_accuracy=None, prompt_accuracy_note=NOT_MEASURED, evaluation_prompts=source,
                          guidance_sweep=sweep,
                          classifier=(result.sample_quality or {}).get("feature_network"))  # fmt: skip


def _prompt_accuracy_and_quality(pipe, result: EvalResult, dataset: str, steps: int, reference: float, batch: int):
    """The figures of `evaluate`, per guidance scale and template set, into `result`."""
    from ..metrics import label_accuracy, load_classifier

    request, n = result.request, result.num_images
    classifier = load_classifier(pipe.unet.config.sample_size)
    template_sets = {"train": (cap.TRAIN_TEMPLATES, request.seed, "training"),
                     "heldout": (cap.HELDOUT_TEMPLATES, request.seed + 1, "held-out")}  # fmt: skip
    accuracy, sweep = {"train": {}, "heldout": {}}, []
    for w in result.details["guidance_scales"]:
        row = {"guidance_scale": w}
        for set_name, (templates, set_seed, which) in template_sets.items():
            images, requested, predicted = _prompt_accuracy(pipe, classifier, templates, n, w, set_seed, steps,
                                                            request.sampler, batch)  # fmt: skip
            acc = label_accuracy(predicted, requested)
            key = f"prompt_accuracy_{set_name}_w{w:g}"
            result.metrics[key] = {"mean": acc, "stderr": math.sqrt(acc * (1 - acc) / n)}  # binomial standard error
            result.metric_labels[key] = (f"prompt accuracy, {which} templates, guidance {w:g}, {request.sampler} "
                                         f"{steps} steps, {n} samples, seed {set_seed}")  # fmt: skip
            per_digit = [float(np.mean(predicted[requested == d] == d)) for d in range(10)]
            accuracy[set_name][f"{w:g}"] = {"overall": acc, "per_digit": per_digit}
            row[f"prompt_accuracy_{set_name}"] = acc
            if set_name != "train":
                continue
            # fidelity and diversity of the training-template samples at this w
            quality = _sample_quality(images, dataset, request)
            samples = f"prompted with the training templates, guidance {w:g}, {request.sampler} {steps} steps"
            row.update(_quality_row(result, quality, w, reference, samples))
        sweep.append(row)
        line = [f"{key} {value['mean']:.3f}" for key, value in result.metrics.items() if key.endswith(f"_w{w:g}")]
        result.notes.append("   ".join([*line, *_quality_note(quality)]))
    result.details.update(prompt_accuracy=accuracy, guidance_sweep=sweep,
                          classifier=result.sample_quality["feature_network"])  # fmt: skip
