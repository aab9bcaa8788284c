"""The text-to-image training script through the CLI: the model folder it writes, exact resume, bad arguments,
the NaN guard, a frozen pretrained text encoder, and `hubgen eval` / `hubgen sample` / the card."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_text2img import tiny_bert

from hubgen.cli import main
from hubgen.pipeline_utils import PICKLE_SUFFIXES
from hubgen.text2img import Text2ImagePipeline

TINY = ["--dataset", "digits", "--block_out_channels", "8", "16", "--attention_heads", "2", "--text_hidden_size", "16",
        "--text_layers", "1", "--text_heads", "2", "--num_inference_steps", "2", "--report_to", "none",
        "--seed", "0"]  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def save_tiny_bert(folder, texts, layers: int):
    """A tiny random BERT with the word-piece tokenizer of `texts`' words, saved to `folder` (a stand-in for
    all-MiniLM-L6-v2's folder); returns the model."""
    bert, tokenizer = tiny_bert(texts, layers)
    bert.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return bert


def _train(out, steps, *extra):
    loop = [
        "--max_train_steps",
        str(steps),
        "--checkpointing_steps",
        "2",
        "--sample_steps",
        "100",
        "--eval_num_samples",
        "0",
    ]
    return main(["train", "text2img", "--output_dir", str(out), *TINY, *loop, *extra])


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("t2i-run") / "model"
    argv = ["train", "text2img", "--output_dir", str(out), *TINY, "--max_train_steps", "4", "--train_batch_size", "32",
            "--checkpointing_steps", "2", "--sample_steps", "2", "--eval_num_samples", "20"]  # fmt: skip
    assert main(argv) == 0
    return out


def test_training_writes_a_complete_text2img_folder(trained_dir):
    out = trained_dir
    for name in ["model_index.json", "unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors",
                 "tokenizer/tokenizer.json", "scheduler/scheduler_config.json", "README.md", "samples.png",
                 "guidance_sweep.png", "loss_curve.png", "eval_results.json", "hubgen_training.json",
                 "nearest_neighbours.png", "samples/step-000002.png",
                 "checkpoints/checkpoint-4/model_unet_ema.safetensors",
                 "checkpoints/checkpoint-4/model_text_encoder_ema.safetensors"]:  # fmt: skip
        assert (out / name).is_file(), name
    assert not [p for p in out.rglob("*") if p.suffix in PICKLE_SUFFIXES]
    # the saved UNet and text encoder are the EMA weights of the last checkpoint
    for component, file, ema in [
        ("unet", "diffusion_pytorch_model", "unet_ema"),
        ("text_encoder", "model", "text_encoder_ema"),
    ]:
        saved = load_file(out / component / f"{file}.safetensors")
        kept = load_file(out / "checkpoints" / "checkpoint-4" / f"model_{ema}.safetensors")
        assert saved.keys() == kept.keys()
        for key in saved:
            torch.testing.assert_close(saved[key], kept[key], rtol=0, atol=0)
    info = json.loads((out / "hubgen_training.json").read_text())
    assert (
        info["steps"] == 4 and info["text_encoder"]["class"] == "CLIPTextModel" and not info["text_encoder"]["frozen"]
    )
    assert info["command"].startswith("hubgen train text2img --output_dir")
    # the saved sampler clips each predicted x_0 to [-1, 1] (thresholding, sample_max_value 1), and the UNet adds
    # the pooled prompt to its time embedding (diffusers' addition_embed_type "text")
    scheduler = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "DPMSolverMultistepScheduler" and scheduler["algorithm_type"] == "dpmsolver++"
    assert scheduler["thresholding"] is True and scheduler["sample_max_value"] == 1.0
    unet = json.loads((out / "unet" / "config.json").read_text())
    assert unet["addition_embed_type"] == "text" and unet["addition_embed_type_num_heads"] == unet["attention_head_dim"]
    from PIL import Image

    with Image.open(out / "samples.png") as grid:  # 10 rows (digits) of 8 samples, 8x8 each, 2 px padding, x 4
        assert grid.size == (4 * (8 * 10 + 2), 4 * (10 * 10 + 2)) and grid.text["hubgen:scale"] == "4"


def test_eval_results_and_card(trained_dir):
    results = json.loads((trained_dir / "eval_results.json").read_text())
    assert results["guidance_scales"] == [1.0, 2.0, 3.0, 5.0] and results["num_samples_per_set"] == 20
    for w in ("1", "2", "3", "5"):
        for which in ("train", "heldout"):
            value = results["metrics"][f"prompt_accuracy_{which}_w{w}"]
            assert 0 <= value["mean"] <= 1 and len(results["prompt_accuracy"][which][w]["per_digit"]) == 10
            assert value["stderr"] == pytest.approx(np.sqrt(value["mean"] * (1 - value["mean"]) / 20))
    assert [r["guidance_scale"] for r in results["guidance_sweep"]] == [1.0, 2.0, 3.0, 5.0]
    assert {"frechet_distance", "coverage", "precision", "prompt_accuracy_heldout"} <= set(results["guidance_sweep"][0])
    assert results["sample_quality"]["frechet_distance"]["name"] == "FD-digits"
    card = (trained_dir / "README.md").read_text()
    for needle in ["pipeline_tag: text-to-image", "type: accuracy", "prompt accuracy, held-out templates, guidance 3",
                   "Text2ImagePipeline.from_pretrained(", "### Prompt accuracy", "| 3 (reference) |",
                   "### Fidelity and diversity", "guidance_sweep.png", "held-out templates",
                   "`a sketch of the number {name}`", "hubgen train text2img --output_dir", "--num_samples 20 --seed 0",
                   "2207.12598", "2112.10752"]:  # fmt: skip
        assert needle in card, needle
    from huggingface_hub import ModelCard

    data = ModelCard.load(trained_dir / "README.md").data
    assert data.pipeline_tag == "text-to-image" and "text2img" in data.tags
    assert any(r.metric_type == "accuracy" for r in data.eval_results)


def test_eval_and_sample_commands(trained_dir, tmp_path, capsys):
    assert main(["eval", str(trained_dir), "--num_samples", "10", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "prompt_accuracy_train_w3" in printed and "FD-digits" in printed and "N=10" in printed
    results = json.loads((trained_dir / "eval_results.json").read_text())
    assert results["seed"] == 3 and results["num_samples_per_set"] == 10
    assert "--num_samples 10 --seed 3" in (trained_dir / "README.md").read_text()
    assert main(["sample", str(trained_dir), "--num_images", "4", "--out", str(tmp_path / "grid.png")]) == 2
    assert "the following arguments are required: --prompt" in capsys.readouterr().err  # never silently unprompted
    assert not (tmp_path / "grid.png").exists()
    grid = str(tmp_path / "grid.png")
    assert (
        main(["sample", str(trained_dir), "--num_images", "4", "--out", grid, "--prompt", "a handwritten seven"]) == 0
    )
    assert (tmp_path / "grid.png").is_file()
    assert main(["eval", str(trained_dir), "--num_samples", "5"]) == 2  # fewer than one per digit
    assert "`num_samples` must be >= 10" in capsys.readouterr().err


def test_resume_continues_exactly(tmp_path):
    # 1437 images at batch 256: 5 batches per epoch, so the resumed half crosses an epoch boundary.
    assert _train(tmp_path / "straight", 6, "--train_batch_size", "256") == 0
    assert _train(tmp_path / "resumed", 3, "--train_batch_size", "256") == 0
    assert _train(tmp_path / "resumed", 6, "--train_batch_size", "256", "--resume_from_checkpoint", "latest") == 0
    for name in ("unet", "text_encoder", "unet_ema", "text_encoder_ema"):
        a = load_file(tmp_path / "straight" / "checkpoints" / "checkpoint-6" / f"model_{name}.safetensors")
        b = load_file(tmp_path / "resumed" / "checkpoints" / "checkpoint-6" / f"model_{name}.safetensors")
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{name}.{key}")
    history = [
        json.loads((tmp_path / r / "hubgen_training.json").read_text())["steps"] for r in ("straight", "resumed")
    ]
    assert history == [6, 6]
    # resuming with another model configuration is refused
    assert _train(tmp_path / "resumed", 8, "--train_batch_size", "256", "--resume_from_checkpoint", "latest",
                  "--text_layers", "2") == 2  # fmt: skip


def test_nan_stops_with_advice_and_keeps_the_checkpoint(tmp_path, monkeypatch, capsys):
    import hubgen.text2img.train_text2img as train_mod

    calls, mse = {"n": 0}, train_mod.F.mse_loss

    def poisoned(a, b, **kwargs):
        calls["n"] += 1
        return mse(a, b, **kwargs) * (float("nan") if calls["n"] > 2 else 1.0)

    monkeypatch.setattr(train_mod.F, "mse_loss", poisoned)
    assert _train(tmp_path / "r", 6, "--train_batch_size", "32") == 1
    printed = capsys.readouterr().out
    assert "non-finite loss at step 3" in printed and "checkpoint-2" in printed and "--learning_rate" in printed
    assert sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir()) == ["checkpoint-2"]


@pytest.mark.parametrize(
    "extra, message",
    [(["--caption_dropout", "1.5"], "--caption_dropout must be in [0, 1)"),
     (["--max_prompt_tokens", "2"], "--max_prompt_tokens must be >= 3"),
     (["--beta_schedule", "cosine"], "invalid choice"),
     (["--prediction_type", "epsilon"], "needs --prediction_type v_prediction"),  # with the default cosine schedule
     (["--prediction_type", "sample"], "invalid choice"),
     (["--snr_gamma", "-1"], "--snr_gamma must be a number >= 0 (0: off), got -1.0"),
     (["--snr_gamma", "nan"], "--snr_gamma must be a number >= 0 (0: off), got nan"),
     (["--max_prompt_tokens", "5"], "longer than the 5 tokens"),
     (["--block_out_channels", "12", "16"], "multiples"),
     (["--train_batch_size", "5000"], "exceeds the 1437 training images"),
     (["--pretrained_text_encoder", "/nonexistent/encoder"], "cannot be loaded"),
     (["--pooled_text_embedding", "max"], "invalid choice"),
     (["--no_pooled_text_embedding", "--pooled_text_embedding", "mean"], "contradicts --pooled_text_embedding mean"),
     (["--validation_prompts", "seven", " "], "--validation_prompts must not be empty"),
     (["--validation_prompts", "seven " * 20], "--validation_prompts 'seven seven")],
)  # fmt: skip
def test_bad_arguments_exit_2(tmp_path, capsys, extra, message):
    assert _train(tmp_path / "o", 2, *extra) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # refused before anything is written


def test_a_dataset_without_labels_is_refused(tmp_path, capsys):
    np.savez(tmp_path / "nolabels.npz", x_train=np.zeros((40, 8, 8), np.uint8), x_test=np.zeros((8, 8, 8), np.uint8))
    argv = [
        "train",
        "text2img",
        "--output_dir",
        str(tmp_path / "o"),
        *TINY,
        "--dataset",
        str(tmp_path / "nolabels.npz"),
    ]
    assert main(argv) == 2
    assert "needs digit labels 0..9" in capsys.readouterr().err


def test_training_with_a_frozen_pretrained_text_encoder(tmp_path):
    from hubgen.text2img import captions as cap

    bert = save_tiny_bert(tmp_path / "encoder", cap.captions_for(cap.TRAIN_TEMPLATES), layers=1)

    out = tmp_path / "model"
    assert _train(out, 2, "--train_batch_size", "32", "--pretrained_text_encoder", str(tmp_path / "encoder")) == 0
    pipe = Text2ImagePipeline.from_pretrained(out)
    assert type(pipe.text_encoder).__name__ == "BertModel" and pipe.max_prompt_length == 16  # capped by the option
    assert pipe.unet.config.cross_attention_dim == 16
    for key, value in bert.state_dict().items():  # frozen: the saved encoder is the pretrained one
        torch.testing.assert_close(pipe.text_encoder.state_dict()[key], value, rtol=0, atol=0)
    assert not (out / "checkpoints" / "checkpoint-2" / "model_text_encoder.safetensors").exists()
    info = json.loads((out / "hubgen_training.json").read_text())
    assert info["text_encoder"]["frozen"] and info["text_encoder"]["source"] == str(tmp_path / "encoder")
    assert "frozen" in (out / "README.md").read_text()


# -- free-text captions: a dataset's caption column ------------------------------------------------------------------

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "white": (255, 255, 255), "black": (0, 0, 0)}
SHAPES = ("square", "bar")


def captioned_rgb(split: str, captions=None):
    """A tiny RGB 16x16 dataset with captions: a coloured square or bar on a coloured background, "a red square on
    a white background" (48 train, 16 test images). An in-memory hubgen.data.ImageDataset with extra["captions"]."""
    from hubgen.data import ImageDataset

    n = 48 if split == "train" else 16
    images, texts = torch.zeros(n, 3, 16, 16, dtype=torch.uint8), []
    for i in range(n):
        fg, bg, shape = ("red", "green", "blue")[i % 3], ("white", "black")[i // 3 % 2], SHAPES[i // 6 % 2]
        images[i] = torch.tensor(COLOURS[bg], dtype=torch.uint8)[:, None, None]
        rows = slice(4, 12) if shape == "square" else slice(7, 9)
        images[i, :, rows, 4:12] = torch.tensor(COLOURS[fg], dtype=torch.uint8)[:, None, None]
        texts.append(f"a {fg} {shape} on a {bg} background")
    texts = texts if captions is None else captions
    return ImageDataset(images, None, "tiny-captions", split, extra={"captions": texts})


def captioned_digits(split: str):
    """scikit-learn's digits (grey 8x8) with free-text captions ("a drawing of the digit 7"): captioned data on
    which the digit classifier's sample-quality figures can be computed."""
    from hubgen.data import ImageDataset, load_dataset

    digits = load_dataset("digits", split)
    texts = [f"a drawing of the digit {int(y)}" for y in digits.labels]
    return ImageDataset(digits.take(len(digits)), None, "tiny-digit-captions", split, levels=digits.levels,
                        extra={"captions": texts})  # fmt: skip


@pytest.fixture
def captioned_data(monkeypatch):
    """`--dataset tiny-captions` (RGB), `tiny-digit-captions` (grey), `empty-captions`: in-memory captioned datasets
    served by hubgen.data.load_dataset (until the data layer's image folders with metadata.jsonl stand in)."""
    import hubgen.data as hdata

    served = {"tiny-captions": captioned_rgb, "tiny-digit-captions": captioned_digits,
              "empty-captions": lambda split: captioned_rgb(split, [""] * (48 if split == "train" else 16)),
              }  # fmt: skip
    original = hdata.load_dataset

    def load_dataset(name_or_spec, split="train", *args, **kwargs):
        name = str(getattr(name_or_spec, "dataset", name_or_spec))
        return served[name](split) if name in served else original(name_or_spec, split, *args, **kwargs)

    import hubgen.metrics.sample_quality as quality  # reads the reference split with its own import of it

    monkeypatch.setattr(hdata, "load_dataset", load_dataset)
    monkeypatch.setattr(quality, "load_dataset", load_dataset, raising=False)
    return served


RGB = ["--dataset", "tiny-captions", "--train_batch_size", "16", "--block_out_channels", "8", "16"]
PROMPT = "a red square on a white background"


def _same_images_after_save_and_reload(folder, tmp_path, prompt=PROMPT):
    pipe = Text2ImagePipeline.from_pretrained(folder)
    call = {"num_inference_steps": 2, "num_images_per_prompt": 2, "guidance_scale": 3.0, "output_type": "pt"}
    a = pipe(prompt, generator=torch.Generator().manual_seed(3), **call).images
    pipe.save_pretrained(tmp_path / "copy")
    b = Text2ImagePipeline.from_pretrained(tmp_path / "copy")(prompt, generator=torch.Generator().manual_seed(3),
                                                               **call).images  # fmt: skip
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert a.shape == (2, 3, 16, 16)
    return pipe


def test_training_on_rgb_captions_with_a_word_level_tokenizer_of_their_words(captioned_data, tmp_path):
    out = tmp_path / "model"
    assert _train(out, 3, *RGB) == 0
    info = json.loads((out / "hubgen_training.json").read_text())
    assert info["image_shape"] == [3, 16, 16] and info["captions"]["source"] == "caption column"
    assert info["captions"]["num_captions"] == 48 and info["captions"]["num_distinct"] == 12
    assert info["captions"]["truncated"] == 0 and "train_templates" not in info
    assert info["validation_prompts"][0] == PROMPT and len(info["validation_prompts"]) == 10
    assert info["text_encoder"]["max_prompt_tokens"] == 16 and info["text_encoder"]["class"] == "CLIPTextModel"
    assert info["pooled_text_embedding"].startswith("attention pool")
    # the tokenizer saved with the pipeline is the word-level one of the captions' words
    pipe = _same_images_after_save_and_reload(out, tmp_path)
    words = {"a", "on", "background", "red", "green", "blue", "white", "black", "square", "bar"}
    assert set(pipe.tokenizer.get_vocab()) == {"[PAD]", "[UNK]", "[BOS]", "[EOS]", *words}
    assert pipe.unknown_words("a purple square") == ["purple"] and pipe.unknown_words(PROMPT) == []
    from transformers import AutoTokenizer

    saved = AutoTokenizer.from_pretrained(out / "tokenizer")
    assert saved.decode(saved(PROMPT.upper()).input_ids, skip_special_tokens=True) == PROMPT
    from PIL import Image

    with Image.open(out / "samples.png") as grid:  # one row of 8 per validation prompt, in colour
        assert grid.mode == "RGB" and grid.size == (2 * (8 * 18 + 2), 2 * (10 * 18 + 2))  # enlarged x 2: >= 256 px
    card = (out / "README.md").read_text()
    for needle in ["trained on the dataset's own captions", "48 captions, 12 distinct", "captions from the dataset's",
                   "over the words of the training captions", f'"{PROMPT}"', "was not measured"]:  # fmt: skip
        assert needle in card, needle
    assert "handwritten" not in card and "held-out templates" not in card


def test_training_on_rgb_captions_with_a_frozen_pretrained_encoder(captioned_data, tmp_path):
    """A tiny BERT (2 layers, width 16) and its word-piece tokenizer stand in for all-MiniLM-L6-v2."""
    bert = save_tiny_bert(tmp_path / "encoder", captioned_rgb("train").captions, layers=2)
    out = tmp_path / "model"
    assert _train(out, 3, *RGB, "--pretrained_text_encoder", str(tmp_path / "encoder")) == 0
    info = json.loads((out / "hubgen_training.json").read_text())
    assert info["text_encoder"]["frozen"] and info["text_encoder"]["class"] == "BertModel"
    assert info["text_encoder"]["tokenizer"].startswith("BertTokenizer") and info["unk_word_prob"] == 0.0
    assert info["pooled_text_embedding"].startswith("mean of tau(y)")
    pipe = _same_images_after_save_and_reload(out, tmp_path)
    assert pipe.unet.config.class_embed_type == "projection" and pipe.unet.config.addition_embed_type is None
    from transformers import AutoTokenizer

    own = AutoTokenizer.from_pretrained(tmp_path / "encoder")
    assert pipe.tokenizer.get_vocab() == own.get_vocab()  # the encoder's own tokenizer, saved with the pipeline
    assert pipe.tokenizer(PROMPT).input_ids == own(PROMPT).input_ids and own.unk_token_id not in own(PROMPT).input_ids
    for key, value in bert.state_dict().items():  # frozen
        torch.testing.assert_close(pipe.text_encoder.state_dict()[key], value, rtol=0, atol=0)
    card = (out / "README.md").read_text()
    assert "the pretrained encoder's own (`BertTokenizer`)" in card and "averaged over the prompt's tokens" in card


def test_captions_longer_than_the_encoder_takes(captioned_data, tmp_path, capsys):
    assert _train(tmp_path / "refused", 2, *RGB, "--max_prompt_tokens", "6") == 2
    err = capsys.readouterr().err
    assert "The caption of image 0, 'a red square on a white background', has 9 tokens, longer than the 6" in err
    assert "--truncate_captions" in err and not (tmp_path / "refused").exists()
    assert _train(tmp_path / "cut", 1, *RGB, "--max_prompt_tokens", "6", "--truncate_captions",
                  "--validation_prompts", "a red square", "blue bar") == 0  # fmt: skip
    assert "Warning: 12 training caption(s) longer than 6 tokens were cut to 6" in capsys.readouterr().out
    info = json.loads((tmp_path / "cut" / "hubgen_training.json").read_text())
    assert info["captions"]["truncated"] == 12 and info["validation_prompts"] == ["a red square", "blue bar"]
    assert "12 training caption(s) were longer and were cut" in (tmp_path / "cut" / "README.md").read_text()
    assert _train(tmp_path / "o", 1, *RGB, "--validation_prompts", "a red square " * 5) == 2
    assert "--validation_prompts 'a red square a red square" in capsys.readouterr().err


def test_an_empty_caption_column_is_refused(captioned_data, tmp_path, capsys):
    assert _train(tmp_path / "o", 2, *RGB, "--dataset", "empty-captions") == 2
    assert "The caption column of dataset 'empty-captions' has no text: all 48 captions are empty" in (
        capsys.readouterr().err)  # fmt: skip
    assert not (tmp_path / "o").exists()


def test_the_evaluation_of_a_captioned_model_is_sample_quality_only(captioned_data, tmp_path, capsys):
    out = tmp_path / "model"
    assert _train(out, 2, "--dataset", "tiny-digit-captions", "--train_batch_size", "32") == 0
    assert main(["eval", str(out), "--num_samples", "12", "--guidance_scales", "1", "3"]) == 0
    printed = capsys.readouterr().out
    assert "prompt accuracy: not measured" in printed and "FD-digits" in printed
    results = json.loads((out / "eval_results.json").read_text())
    assert results["metrics"] == {} and results["prompt_accuracy"] is None
    assert results["num_samples_per_set"] == 12 and [r["guidance_scale"] for r in results["guidance_sweep"]] == [1, 3]
    assert results["evaluation_prompts"] == "the test split's captions in order"
    assert results["sample_quality"]["frechet_distance"]["name"] == "FD-digits"
    assert "prompt_accuracy_train" not in results["guidance_sweep"][0]
    card = (out / "README.md").read_text()
    for needle in ["### Prompt accuracy: not measured", "### Fidelity and diversity", "| 3 |", "guidance_sweep.png",
                   "a drawing of the digit"]:  # fmt: skip
        assert needle in card, needle


def test_v_prediction_with_the_cosine_schedule_and_min_snr_weighting_by_default(captioned_data, tmp_path):
    out = tmp_path / "model"
    assert _train(out, 3, *RGB) == 0
    info = json.loads((out / "hubgen_training.json").read_text())
    assert info["prediction_type"] == "v_prediction" and info["snr_gamma"] == 5.0
    assert info["beta_schedule"] == "squaredcos_cap_v2"
    saved = json.loads((out / "scheduler" / "scheduler_config.json").read_text())  # the sampler predicts v too
    assert saved["prediction_type"] == "v_prediction" and saved["beta_schedule"] == "squaredcos_cap_v2"
    pipe = _same_images_after_save_and_reload(out, tmp_path)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    card = (out / "README.md").read_text()
    assert "`squaredcos_cap_v2` noise schedule, v-prediction (Salimans & Ho 2022)" in card
    assert "min-SNR-5.0 weighting (Hang et al. 2023) |\n| guidance training |" in card
    # resuming with the other parameterization is refused: the weights predict v
    eps = ["--prediction_type", "epsilon", "--beta_schedule", "linear", "--snr_gamma", "0"]
    assert _train(out, 5, *RGB, *eps, "--resume_from_checkpoint", "latest") == 2
    # Ho et al.'s recipe is one option set away, and saves an epsilon sampler
    assert _train(tmp_path / "eps", 2, *RGB, *eps) == 0
    info = json.loads((tmp_path / "eps" / "hubgen_training.json").read_text())
    assert (info["prediction_type"], info["beta_schedule"], info["snr_gamma"]) == ("epsilon", "linear", None)
    saved = json.loads((tmp_path / "eps" / "scheduler" / "scheduler_config.json").read_text())
    assert saved["prediction_type"] == "epsilon"
