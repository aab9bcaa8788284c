"""Captions for labelled digit images, and the word-level tokenizer built from their vocabulary.

A label y in 0..9 becomes a caption by filling a template with the digit's name ("seven") or numeral ("7").
Two disjoint template sets:

- TRAIN_TEMPLATES: what the model sees during training, one drawn at random per image and step;
- HELDOUT_TEMPLATES: other phrasings, never used in training, to measure whether the model learned the digit
  word rather than memorizing whole captions. Some of their words are not in the training vocabulary
  ("sketch", "scribbled", ...): the tokenizer maps those to [UNK].

The tokenizer (`build_tokenizer`) is a `tokenizers` WordLevel model over the words of the training captions:
NFKC + lowercase normalization, split on whitespace and punctuation, [BOS] ... [EOS] around every prompt,
[PAD] for padding, [UNK] for anything else. It is returned as a transformers `PreTrainedTokenizerFast`, so it
saves to and loads from a pipeline's `tokenizer/` folder like any Hub tokenizer.
"""

import torch

from ..errors import UserInputError

__all__ = [
    "DIGIT_NAMES",
    "TRAIN_TEMPLATES",
    "HELDOUT_TEMPLATES",
    "SPECIAL_TOKENS",
    "caption",
    "captions_for",
    "digit_prompt",
    "training_vocabulary",
    "build_tokenizer",
    "caption_table",
]

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# {name}: "seven"; {digit}: "7". Case and punctuation vary on purpose (the tokenizer lowercases and splits
# punctuation off), and the digit word sits at different positions.
TRAIN_TEMPLATES = (
    "a handwritten digit {name}",
    "the number {digit}",
    "{digit}",
    "{name}, written by hand",
    "{name}",
    "the digit {name}",
    "a handwritten {digit}",
    "An image of the number {name}",
    "a picture of a {digit}",
    "digit {digit}",
    "number {name}",
    "handwritten {name}.",
    "the numeral {digit}",
    "a hand-drawn {name}",
    "{digit}, handwritten",
    "a photo of the digit {digit}",
)

# Never used in training: new word orders, and words the training captions do not contain.
HELDOUT_TEMPLATES = (
    "a sketch of the number {name}",
    "please draw a {digit}",
    "{name}!",
    "the figure {name}, drawn by hand",
    "an image showing the digit {digit}",
    "write the number {name}",
    "a scribbled {digit}",
    "{digit} (handwritten)",
)

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)  # ids 0, 1, 2, 3


def caption(template: str, label: int) -> str:
    """Fill `template` for digit `label` (0..9)."""
    if not 0 <= int(label) <= 9:
        raise UserInputError(f"`label` must be a digit 0..9, got {label!r}.")
    return template.format(name=DIGIT_NAMES[int(label)], digit=int(label))


def captions_for(templates=TRAIN_TEMPLATES, labels=range(10)) -> list[str]:
    """Every (template, label) caption, template-major."""
    return [caption(t, y) for t in templates for y in labels]


def digit_prompt(label: int) -> str:
    """The fixed prompt of the validation grids and the card: "a handwritten digit seven"."""
    return caption(TRAIN_TEMPLATES[0], label)


def _pre_tokenizer():
    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    splitter = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    return normalizer, splitter


def _words(text: str) -> list[str]:
    normalizer, splitter = _pre_tokenizer()
    return [w for w, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text))]


def training_vocabulary() -> list[str]:
    """The special tokens, then every word of the training captions (digit names and numerals included), sorted."""
    words = {w for c in captions_for(TRAIN_TEMPLATES) for w in _words(c)}
    words |= set(DIGIT_NAMES) | {str(d) for d in range(10)}
    return [*SPECIAL_TOKENS, *sorted(words)]


def build_tokenizer(model_max_length: int = 16):
    """A transformers `PreTrainedTokenizerFast` over `training_vocabulary()`; see the module docstring.

    `model_max_length` counts [BOS] and [EOS]; prompts are padded to it, and longer ones are refused by the
    pipeline rather than truncated.
    """
    from tokenizers import Tokenizer, decoders, models, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {word: i for i, word in enumerate(training_vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.normalizer, tok.pre_tokenizer = _pre_tokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])]
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=model_max_length,
        pad_token=PAD,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        padding_side="right",
    )


def caption_table(tokenizer, templates, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention masks of every caption, padded to `max_length`: two (T, 10, max_length) int64
    tensors indexed [template, digit]. Training looks captions up here instead of tokenizing every step.
    Raises ValueError when a caption is longer than `max_length` tokens."""
    texts = captions_for(templates)
    for text, ids in zip(texts, tokenizer(texts).input_ids, strict=True):
        if len(ids) > max_length:
            raise UserInputError(f"The caption {text!r} is longer than the {max_length} tokens the text encoder takes.")
    enc = tokenizer(texts, padding="max_length", max_length=max_length, truncation=False, return_tensors="pt")
    shape = (len(templates), 10, max_length)
    return enc.input_ids.reshape(shape), enc.attention_mask.reshape(shape)
