"""Training captions: digit templates for labelled digit images, or a dataset's own caption column; the word-level
tokenizer built from their vocabulary; and the caption bank training draws from.

A label y in 0..9 becomes a caption by filling a template with the digit's name ("seven") or numeral ("7").
Two disjoint template sets:

- TRAIN_TEMPLATES: what the model sees during training, one drawn at random per image and step;
- HELDOUT_TEMPLATES: other phrasings, never used in training, to measure whether the model learned the digit
  word rather than memorizing whole captions. Some of their words are not in the training vocabulary
  ("sketch", "scribbled", ...): the tokenizer maps those to [UNK].

The tokenizer (`build_tokenizer`) is a `tokenizers` WordLevel model over the words of the training captions:
NFKC + lowercase normalization, split on whitespace and punctuation, [BOS] ... [EOS] around every prompt,
[PAD] for padding, [UNK] for anything else. It is returned as a transformers `PreTrainedTokenizerFast`, so it
saves to and loads from a pipeline's `tokenizer/` folder like any Hub tokenizer. For a dataset with a caption
column (`train_set.captions`, free text) `caption_vocabulary` collects the words of its captions instead.

Training looks captions up in a `CaptionBank` (`digit_caption_bank`, `caption_bank`): every distinct caption
tokenized once, and per image the rows of its candidate captions (the templates of its digit, or its own
caption(s)).
"""

from dataclasses import dataclass

import torch

from ..errors import UserInputError

__all__ = [
    "DIGIT_NAMES",
    "DIGIT_CAPTIONS",
    "TRAIN_TEMPLATES",
    "HELDOUT_TEMPLATES",
    "SPECIAL_TOKENS",
    "caption",
    "captions_for",
    "digit_prompt",
    "training_vocabulary",
    "build_tokenizer",
    "caption_vocabulary",
    "caption_table",
    "CaptionBank",
    "digit_caption_bank",
    "caption_bank",
    "check_captions",
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

DIGIT_CAPTIONS = "digit templates"  # the training record's captions.source for captions made from digit labels
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


def caption_vocabulary(captions) -> list[str]:
    """The special tokens, then every word of `captions` (strings), sorted: the vocabulary of a word-level
    tokenizer for a dataset's own captions."""
    normalizer, splitter = _pre_tokenizer()
    words = {w for text in captions for w, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text))}
    return [*SPECIAL_TOKENS, *sorted(words - set(SPECIAL_TOKENS))]


def build_tokenizer(model_max_length: int = 16, vocabulary: list[str] | None = None):
    """A transformers `PreTrainedTokenizerFast` over `vocabulary` (default `training_vocabulary()`, the digit
    templates' words; it must start with SPECIAL_TOKENS); see the module docstring.

    `model_max_length` counts [BOS] and [EOS]; prompts are padded to it, and longer ones are refused by the
    pipeline rather than truncated.
    """
    from tokenizers import Tokenizer, decoders, models, processors
    from transformers import PreTrainedTokenizerFast

    vocabulary = training_vocabulary() if vocabulary is None else list(vocabulary)
    if tuple(vocabulary[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS or len(set(vocabulary)) != len(vocabulary):
        raise UserInputError(f"A vocabulary starts with {list(SPECIAL_TOKENS)} and has no repeated word.")
    vocab = {word: i for i, word in enumerate(vocabulary)}
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


# -- what training draws from -----------------------------------------------------------------------------------


@dataclass
class CaptionBank:
    """Every distinct training caption tokenized once, and per image the rows of its candidate captions.

    Row u < U of `ids` / `mask` (U + 1, L) is `texts[u]`; the last row (`empty_row`) is the empty prompt "" that
    caption dropout substitutes. Image i's candidates are the rows `choices[first[i] : first[i] + count[i]]`
    (the T templates of its digit, or its own caption(s)). `hideable` marks the tokens `--unk_word_prob` may
    replace by `unk_id` (none for a frozen pretrained encoder; never a special token or a digit word).
    `truncated` counts the captions that were cut to L tokens.
    """

    texts: list[str]
    ids: torch.Tensor
    mask: torch.Tensor
    hideable: torch.Tensor
    choices: torch.Tensor
    first: torch.Tensor
    count: torch.Tensor
    unk_id: int
    truncated: int = 0

    @property
    def empty_row(self) -> int:
        return len(self.texts) - 1

    @property
    def max_length(self) -> int:
        return int(self.ids.shape[1])

    def to(self, device) -> "CaptionBank":
        moved = {k: v.to(device) if torch.is_tensor(v) else v for k, v in vars(self).items()}
        return CaptionBank(**moved)


def _hideable(tokenizer, ids: torch.Tensor, keep_words=(), hide_words: bool = True) -> torch.Tensor:
    """The tokens of `ids` that may become [UNK]: none without `hide_words` or an unknown token; else every token
    but the special ones and `keep_words`."""
    keep = torch.tensor(sorted({*tokenizer.all_special_ids, *tokenizer.convert_tokens_to_ids(list(keep_words))}))
    return torch.isin(ids, keep, invert=True) & (hide_words and tokenizer.unk_token_id is not None)


def _unk_id(tokenizer) -> int:
    unk = tokenizer.unk_token_id
    return int(tokenizer.pad_token_id if unk is None else unk)  # without an unknown token nothing is hidden


def _empty_row(tokenizer, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    enc = tokenizer([""], padding="max_length", max_length=max_length, return_tensors="pt")
    return enc.input_ids, enc.attention_mask  # (1, L) each


def digit_caption_bank(tokenizer, labels: torch.Tensor, hide_words: bool = True, templates=TRAIN_TEMPLATES):
    """The bank of the digit templates: image i (label y) draws one of the T captions of digit y. Raises
    UserInputError when a caption is longer than `tokenizer.model_max_length` tokens."""
    length, t = int(tokenizer.model_max_length), len(templates)
    table_ids, table_mask = caption_table(tokenizer, templates, length)  # (T, 10, L), template-major
    empty_ids, empty_mask = _empty_row(tokenizer, length)
    ids = torch.cat([table_ids.reshape(-1, length), empty_ids])  # (10 T + 1, L)
    mask = torch.cat([table_mask.reshape(-1, length), empty_mask])
    labels = torch.as_tensor(labels, dtype=torch.long)
    return CaptionBank(
        texts=[*captions_for(templates), ""],
        ids=ids,
        mask=mask,
        hideable=_hideable(tokenizer, ids, [*DIGIT_NAMES, *map(str, range(10))], hide_words),
        choices=torch.arange(t * 10).reshape(t, 10).T.flatten(),  # digit d's rows d, 10 + d, ... at d T .. d T + T - 1
        first=labels * t,
        count=torch.full_like(labels, t),
        unk_id=_unk_id(tokenizer),
    )


def check_captions(captions, num_images: int, where: str) -> list[list[str]]:
    """A dataset's caption column (one str, or a non-empty list of str, per image) -> candidates per image.
    UserInputError (naming `where`, e.g. "the caption column 'text' of dataset 'x'") for a column of the wrong
    length, an entry that is not text, or a column without any text."""
    if len(captions) != num_images:
        raise UserInputError(f"{where} has {len(captions)} captions for {num_images} images: one per image is needed.")
    found = []
    for i, entry in enumerate(captions):
        texts = [entry] if isinstance(entry, str) else entry
        if not isinstance(texts, (list, tuple)) or not texts or not all(isinstance(t, str) for t in texts):
            raise UserInputError(f"{where}: caption {i} is {entry!r}; a caption is a string (or a list of strings).")
        found.append(list(texts))
    if not any(t.strip() for texts in found for t in texts):
        raise UserInputError(
            f"{where} has no text: all {num_images} captions are empty. Name the column that holds the captions "
            "with --caption_column."
        )
    return found


def caption_bank(tokenizer, captions: list[list[str]], truncate: bool = False, hide_words: bool = True):
    """The bank of a dataset's own captions (`check_captions`' output): image i draws one of its captions.

    A caption with more than L = `tokenizer.model_max_length` tokens (special tokens included) is refused with
    UserInputError, or with `truncate` cut to its first L tokens (the tokenizer's truncation keeps the special
    tokens) and counted in `truncated`."""
    length = int(tokenizer.model_max_length)
    rows: dict[str, int] = {}
    choices = [rows.setdefault(text, len(rows)) for texts in captions for text in texts]
    texts = list(rows)
    lengths = [len(ids) for ids in tokenizer(texts).input_ids]
    too_long = [u for u, n in enumerate(lengths) if n > length]
    if too_long and not truncate:
        u = too_long[0]
        image = next(i for i, cands in enumerate(captions) if texts[u] in cands)
        shown = texts[u] if len(texts[u]) <= 100 else texts[u][:97] + "..."
        raise UserInputError(
            f"The caption of image {image}, {shown!r}, has {lengths[u]} tokens, longer than the {length} tokens the "
            f"text encoder takes (special tokens included; {len(too_long)} caption(s) in all). Raise "
            "--max_prompt_tokens, or pass --truncate_captions to cut them."
        )
    enc = tokenizer([*texts, ""], padding="max_length", max_length=length, truncation=True, return_tensors="pt")
    count = torch.tensor([len(texts_i) for texts_i in captions])
    return CaptionBank(
        texts=[*texts, ""],
        ids=enc.input_ids,
        mask=enc.attention_mask,
        hideable=_hideable(tokenizer, enc.input_ids, (), hide_words),
        choices=torch.tensor(choices),
        first=torch.cumsum(count, 0) - count,
        count=count,
        unk_id=_unk_id(tokenizer),
        truncated=len(too_long),
    )
