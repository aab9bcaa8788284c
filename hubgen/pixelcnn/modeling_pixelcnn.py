"""PixelCNN (van den Oord et al. 2016, arXiv:1601.06759) and Gated PixelCNN (arXiv:1606.05328) as a diffusers model.

An autoregressive model factorizes the image's distribution in raster order, colours R -> G -> B within a pixel
(PixelRNN paper eq. 1-2):

    p(x) = prod_{i=1}^{H W} p(x_{i,R} | x_<i) p(x_{i,G} | x_<i, x_{i,R}) p(x_{i,B} | x_<i, x_{i,R}, x_{i,G})

so log p(x) is an exact sum of per-value log-probabilities: no bound, no dequantization. One network pass gives every
conditional at once because its convolutions are masked (section 3.4): a kernel sees the rows above its centre and,
on the centre row, the columns to its left; at the centre tap a feature of colour group g sees the input groups
before g (mask "A", the first layer: a value never sees itself) or up to and including g (mask "B", later layers).

- `architecture="pixelcnn"`: a 7x7 mask-A convolution, residual blocks (1x1 -> 3x3 -> 1x1, mask B; paper Figure 5),
  then two 1x1 mask-B layers. Stacked masked 3x3 kernels leave a blind spot above and to the right.
- `architecture="gated"`: a vertical stack that sees every row above (any column) and a horizontal stack that sees
  the current row to the left, joined by a 1x1 link from vertical to horizontal, with gated activations
  tanh(W_f * x) * sigmoid(W_g * x) (Gated PixelCNN eq. 2): no blind spot.
- `architecture="multiscale"`: PixelCNN++'s network (Salimans et al. 2017, arXiv:1701.05517, sections 2.3-2.4), with
  this family's per-value outputs instead of its logistic mixture: a stream `u` that sees the rows above and a
  stream `ul` that sees the rows above and the current row's left, built from shifted convolutions instead of masked
  ones (no weight is multiplied by a zero), gated residual layers, downsampling by strided convolutions to 1/2 and
  1/4 resolution and back, with skip connections between the two passes. Its cost per image grows little with its
  reach: every output sees every value above it and to its left (no blind spot) at a fraction of the full-
  resolution multiply-adds a masked stack would need for that reach. Colours within a pixel enter at the head,
  through a 1x1 convolution with mask A from the input.

The output is a Bernoulli logit per value (`pixel_levels=2`, binarized data) or a `pixel_levels`-way categorical per
value: logits (B, C, K, H, W). Every value an output depends on lies in the `receptive_rows` rows above it and its
own row, which the pipeline's fast sampler uses to run the network on a window of rows instead of the whole image.
"""

from typing import Literal

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin  # noqa: F401  (diffusers' loader looks ModelMixin up here)
from diffusers.configuration_utils import register_to_config
from torch import nn

from ..draws import rand_tensor
from ..errors import UserInputError
from ..metrics.units import at_least_float32

__all__ = ["PixelCNNModel", "MaskedConv2d", "causal_mask", "sample_levels", "to_input", "value_log_probs"]


def _groups(n: int, channels: int, repeats: int = 1) -> torch.Tensor:
    """The colour group of each of n features: `repeats` contiguous blocks, each split evenly in `channels` groups
    (a gated layer's output is two blocks: the tanh half and the sigmoid half)."""
    per = n // repeats
    return torch.arange(n) % per * channels // per


def causal_mask(out_channels: int, in_channels: int, kernel: tuple[int, int], mask_type: Literal["A", "B"],
                channels: int, out_repeats: int = 1,
                rows: Literal["causal", "above"] = "causal") -> torch.Tensor:  # fmt: skip
    """The (out, in, kh, kw) 0/1 mask of a masked convolution whose centre is (kh // 2, kw // 2).

    rows="causal": the rows above the centre, and on the centre row the columns left of it, plus the centre tap
    between colour groups: in group < out group (A) or <= (B). rows="above": the centre row and every row above it,
    all columns (the gated vertical stack, whose input is shifted down one row so that it sees only rows above)."""
    kh, kw = kernel
    mask = torch.zeros(out_channels, in_channels, kh, kw)
    cy, cx = kh // 2, kw // 2
    if rows == "above":
        mask[:, :, : cy + 1, :] = 1
        return mask
    mask[:, :, :cy, :] = 1
    mask[:, :, cy, :cx] = 1
    g_out, g_in = _groups(out_channels, channels, out_repeats), _groups(in_channels, channels)
    allowed = g_in[None, :] < g_out[:, None] if mask_type == "A" else g_in[None, :] <= g_out[:, None]
    mask[:, :, cy, cx] = allowed.float()
    return mask


class MaskedConv2d(nn.Conv2d):
    """nn.Conv2d whose weight is multiplied by a fixed mask (a buffer) on every call, with "same" padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int], mask: torch.Tensor):
        super().__init__(in_channels, out_channels, kernel, padding=(kernel[0] // 2, kernel[1] // 2))
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


def _conv(c_in: int, c_out: int, k: int, mask_type: str, channels: int, out_repeats: int = 1) -> MaskedConv2d:
    return MaskedConv2d(c_in, c_out, (k, k), causal_mask(c_out, c_in, (k, k), mask_type, channels, out_repeats))


class ResidualBlock(nn.Module):
    """PixelCNN paper Figure 5: ReLU -> 1x1 (h -> h/2) -> ReLU -> 3x3 -> ReLU -> 1x1 (h/2 -> h), all mask B, plus
    the input."""

    def __init__(self, hidden: int, channels: int):
        super().__init__()
        half = hidden // 2
        self.net = nn.Sequential(nn.ReLU(), _conv(hidden, half, 1, "B", channels), nn.ReLU(),
                                 _conv(half, half, 3, "B", channels), nn.ReLU(),
                                 _conv(half, hidden, 1, "B", channels))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class GatedLayer(nn.Module):
    """One Gated PixelCNN layer (arXiv:1606.05328 Figure 2): v' = gate(V * v), h' = h + 1x1(gate(H * h + 1x1(V * v))),
    gate(a, b) = tanh(a) * sigmoid(b). The vertical kernel is k x k over the centre row and the rows above (its input is
    shifted down a row once, at the stack's start); the horizontal kernel is 1 x k, masked causally (A in the first
    layer, which has no residual)."""

    def __init__(self, hidden: int, channels: int, kernel: int, mask_type: str, c_in: int | None = None):
        super().__init__()
        c_in = c_in or hidden
        self.residual = mask_type == "B"
        v_mask = causal_mask(2 * hidden, c_in, (kernel, kernel), "B", channels, rows="above")
        self.vertical = MaskedConv2d(c_in, 2 * hidden, (kernel, kernel), v_mask)
        h_mask = causal_mask(2 * hidden, c_in, (1, kernel), mask_type, channels, out_repeats=2)
        self.horizontal = MaskedConv2d(c_in, 2 * hidden, (1, kernel), h_mask)
        self.link = nn.Conv2d(2 * hidden, 2 * hidden, 1)  # vertical -> horizontal: rows above only, no mask needed
        self.out = _conv(hidden, hidden, 1, "B", channels)

    @staticmethod
    def gate(x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return torch.tanh(a) * torch.sigmoid(b)

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v_pre = self.vertical(v)
        h_new = self.out(self.gate(self.horizontal(h) + self.link(v_pre)))
        return self.gate(v_pre), (h + h_new if self.residual else h_new)


def _down_shift(x: torch.Tensor) -> torch.Tensor:
    """Move every row one down (a zero row on top): position (i, j) then holds what (i - 1, j) held."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


def _right_shift(x: torch.Tensor) -> torch.Tensor:
    """Move every column one right (a zero column on the left)."""
    return F.pad(x, (1, 0, 0, 0))[:, :, :, :-1]


class ShiftedConv2d(nn.Conv2d):
    """A (kh, kw) convolution padded so that output (i, j) reads input rows i - kh + 1 .. i and columns centred on j
    (`direction="down"`) or j - kw + 1 .. j (`"down_right"`): PixelCNN++'s down-shifted and down-right-shifted
    convolutions. Nothing below (or, down-right, to the right) is read, so no mask is needed; with stride 2 output
    (i, j) reads input rows up to 2 i and columns up to 2 j (down-right)."""

    def __init__(self, c_in: int, c_out: int, kernel: tuple[int, int], direction: str, stride: int = 1):
        super().__init__(c_in, c_out, kernel, stride=stride)
        kh, kw = kernel
        side = (kw - 1) // 2
        self.shift_pad = (side, side, kh - 1, 0) if direction == "down" else (kw - 1, 0, kh - 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.shift_pad))


class GatedResnet(nn.Module):
    """PixelCNN++'s gated residual layer: h = conv1(elu(x)) [+ nin(elu(skip))], (a, b) = conv2(elu(h)),
    x + a * sigmoid(b). ELU rather than the paper's concatenated ELU, which doubles every convolution's input."""

    def __init__(self, hidden: int, kernel: tuple[int, int], direction: str, skip_channels: int = 0):
        super().__init__()
        self.conv1 = ShiftedConv2d(hidden, hidden, kernel, direction)
        self.nin = nn.Conv2d(skip_channels, hidden, 1) if skip_channels else None
        self.conv2 = ShiftedConv2d(hidden, 2 * hidden, kernel, direction)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.elu(x))
        if skip is not None:
            h = h + self.nin(F.elu(skip))
        a, b = self.conv2(F.elu(h)).chunk(2, dim=1)
        return x + a * torch.sigmoid(b)


class MultiscaleStreams(nn.Module):
    """PixelCNN++'s two passes over three resolutions (1, 1/2, 1/4). The first pass runs `layers` gated layers per
    resolution on both streams (ul's layers also read u), then halves the resolution with stride-2 shifted
    convolutions; the second pass runs `layers` per resolution from the coarsest up, each reading the first pass's
    output at the same place (u: its own; ul: u and its own), and doubles the resolution by repeating each value 2 x 2.

    Why causal: u at row i depends only on input rows < i, ul at (i, j) only on rows < i and row i's columns < j.
    A stride-2 conv's output (i', j') reads rows 2 i' - 1 .. 2 i' (and ul's columns 2 j' - 1 .. 2 j'), so u' at i'
    depends on input rows < 2 i' and ul' at (i', j') on rows < 2 i' and row 2 i''s columns < 2 j'; repeating (i', j')
    onto (2 i' + di, 2 j' + dj) therefore keeps both properties. tests/test_pixelcnn_model.py checks it by autograd.
    """

    factor = 4  # 2 ** (resolutions - 1): the image is zero-padded at the bottom and right to a multiple of it

    def __init__(self, c: int, hidden: int, layers: int):
        super().__init__()
        h, down, right = hidden, (2, 3), (2, 2)
        self.u_in = ShiftedConv2d(c, h, down, "down")
        self.ul_in_above = ShiftedConv2d(c, h, (1, 3), "down")
        self.ul_in_left = ShiftedConv2d(c, h, (2, 1), "down_right")
        n = 3 * layers
        self.first_u = nn.ModuleList(GatedResnet(h, down, "down") for _ in range(n))
        self.first_ul = nn.ModuleList(GatedResnet(h, right, "down_right", h) for _ in range(n))
        self.halve_u = nn.ModuleList(ShiftedConv2d(h, h, down, "down", stride=2) for _ in range(2))
        self.halve_ul = nn.ModuleList(ShiftedConv2d(h, h, right, "down_right", stride=2) for _ in range(2))
        self.second_u = nn.ModuleList(GatedResnet(h, down, "down", h) for _ in range(n))
        self.second_ul = nn.ModuleList(GatedResnet(h, right, "down_right", 2 * h) for _ in range(n))
        self.layers = layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._passes(x)

    def forward_row(self, x: torch.Tensor, r: int, cache: dict) -> torch.Tensor:
        """Row r of `forward(x)`, (B, hidden, 1, W), computing only the row each intermediate tensor has at the
        current place: r >> level at resolution 1 / 2 ** level; the rows above come from `cache`, which this call
        fills. The fast sampler's cache: only those rows change while row r is drawn.

        Every layer reads at most the row above its output (kernels of height 2; the stride-2 ones rows 2 a - 1 and
        2 a), so three rows of its input give the last row of a gated layer exactly; those rows must hold their final
        values: call this for every row in order, and again for row r - 1 once row r - 1 is complete."""
        return self._passes(x, r, cache)

    def _passes(self, x: torch.Tensor, r: int | None = None, cache: dict | None = None) -> torch.Tensor:
        """Both passes, written once: over the whole image (r None), or over the rows that give row r (forward_row).
        `take(t, a)` is what a layer reads to give row a of its output (all of t, or rows a - 2 .. a), `keep` what
        it passes on (the whole output, or its last row written into the cache and the cached tensor)."""
        height, width = x.shape[-2:]
        x = F.pad(x, (0, -width % self.factor, 0, -height % self.factor))  # after every value: changes no output
        whole = r is None

        def take(t: torch.Tensor, a: int) -> torch.Tensor:
            return t if whole else _rows(t, a)

        def take_upsampled(t: torch.Tensor, a: int) -> torch.Tensor:
            return t.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3) if whole else _rows_upsampled(t, a)

        def keep(key, a: int, value: torch.Tensor, level: int) -> torch.Tensor:
            if whole:
                return value
            if key not in cache:
                cache[key] = value.new_zeros(*value.shape[:2], x.shape[-2] >> level, x.shape[-1] >> level)
            cache[key][:, :, a] = value[:, :, -1]
            return cache[key]

        a, level = (0 if whole else r), 0
        xs = take(x, a)
        u = keep("u", a, _down_shift(self.u_in(xs)), level)  # rows above
        ul = keep("ul", a, _down_shift(self.ul_in_above(xs)) + _right_shift(self.ul_in_left(xs)), level)  # and left
        skips = []
        for i, (layer_u, layer_ul) in enumerate(zip(self.first_u, self.first_ul, strict=True)):
            if i and i % self.layers == 0:
                j, level = i // self.layers - 1, level + 1
                a = 0 if whole else r >> level
                u = keep(("halve_u", j), a, self.halve_u[j](take(u, 2 * a)), level)
                ul = keep(("halve_ul", j), a, self.halve_ul[j](take(ul, 2 * a)), level)
            u = keep(("first_u", i), a, layer_u(take(u, a)), level)
            ul = keep(("first_ul", i), a, layer_ul(take(ul, a), take(u, a)), level)
            skips.append((u, ul))
        for i, (layer_u, layer_ul) in enumerate(zip(self.second_u, self.second_ul, strict=True)):
            if i and i % self.layers == 0:
                level -= 1
                a = 0 if whole else r >> level
                u_in, ul_in = take_upsampled(u, a), take_upsampled(ul, a)
            else:
                u_in, ul_in = take(u, a), take(ul, a)
            skip_u, skip_ul = skips.pop()
            u = keep(("second_u", i), a, layer_u(u_in, take(skip_u, a)), level)
            ul = keep(("second_ul", i), a, layer_ul(ul_in, torch.cat([take(u, a), take(skip_ul, a)], dim=1)), level)
        return ul[:, :, :height, :width] if whole else ul[:, :, r : r + 1, :width]


def _rows(t: torch.Tensor, a: int, context: int = 2) -> torch.Tensor:
    """Rows a - context .. a of t (fewer at the top edge, where the zero padding is the true one)."""
    return t[:, :, max(0, a - context) : a + 1]


def _rows_upsampled(coarse: torch.Tensor, a: int, context: int = 2) -> torch.Tensor:
    """Rows a - context .. a of `coarse` upsampled by repeating every value 2 x 2 (fine row b is coarse row b // 2)."""
    top = max(0, a - context)
    fine = coarse[:, :, top // 2 : a // 2 + 1].repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    return fine[:, :, top % 2 : top % 2 + a - top + 1]


class PixelCNNModel(ModelMixin, ConfigMixin):
    """Per-value conditionals of an image: `forward(x)` -> logits (B, C, H, W) for Bernoulli values
    (`pixel_levels=2`) or (B, C, K, H, W) for a K-way categorical, K = `pixel_levels`.

    `x` holds the values scaled to [-1, 1] (level k of K as 2 k / (K - 1) - 1), the network's input.
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int = 28,
        in_channels: int = 1,
        pixel_levels: int = 2,
        architecture: Literal["pixelcnn", "gated", "multiscale"] = "gated",
        hidden_channels: int = 64,
        num_layers: int = 7,
        kernel_size: int = 3,
        output_hidden: int | None = None,
    ):
        super().__init__()
        if architecture not in ("pixelcnn", "gated", "multiscale"):
            raise UserInputError(f"`architecture` must be 'pixelcnn', 'gated' or 'multiscale', got {architecture!r}.")
        if in_channels not in (1, 3):
            raise UserInputError(f"`in_channels` must be 1 or 3, got {in_channels}.")
        if pixel_levels < 2:
            raise UserInputError(f"`pixel_levels` must be >= 2, got {pixel_levels}.")
        unit = 2 * in_channels  # hidden/2 must still split evenly into the colour groups
        if hidden_channels < unit or hidden_channels % unit:
            raise UserInputError(f"`hidden_channels` must be a positive multiple of {unit} for {in_channels} "
                                 f"channel(s), got {hidden_channels}.")  # fmt: skip
        if num_layers < 1 or kernel_size < 3 or kernel_size % 2 == 0:
            raise UserInputError(f"`num_layers` must be >= 1 and `kernel_size` odd and >= 3, got {num_layers}, "
                                 f"{kernel_size}.")  # fmt: skip
        c, h, k = in_channels, hidden_channels, 1 if pixel_levels == 2 else pixel_levels
        out_hidden = output_hidden or h
        if out_hidden % c:
            raise UserInputError(f"`output_hidden` must be a multiple of {c}, got {out_hidden}.")
        if architecture == "pixelcnn":
            self.stem = _conv(c, h, 7, "A", c)
            self.blocks = nn.ModuleList(ResidualBlock(h, c) for _ in range(num_layers))
        elif architecture == "multiscale":
            self.streams = MultiscaleStreams(c, h, num_layers)
            self.head_streams = nn.Conv2d(h, out_hidden, 1)
            self.head_colours = _conv(c, out_hidden, 1, "A", c) if c > 1 else None
        else:
            rest = [GatedLayer(h, c, kernel_size, "B") for _ in range(num_layers - 1)]
            self.layers = nn.ModuleList([GatedLayer(h, c, kernel_size, "A", c_in=c), *rest])
        if architecture == "multiscale":
            self.head = nn.Sequential(nn.ReLU(), _conv(out_hidden, c * k, 1, "B", c))
        else:
            self.head = nn.Sequential(nn.ReLU(), _conv(h, out_hidden, 1, "B", c), nn.ReLU(),
                                      _conv(out_hidden, c * k, 1, "B", c))  # fmt: skip

    @property
    def receptive_rows(self) -> int:
        """How many rows above its own an output depends on (the fast sampler's window)."""
        cfg = self.config
        if cfg.architecture == "pixelcnn":
            return 3 + cfg.num_layers  # the 7x7 stem, then one row per 3x3 block
        if cfg.architecture == "multiscale":
            return cfg.sample_size  # the coarse resolutions reach every row above
        return 1 + cfg.num_layers * (cfg.kernel_size // 2)  # the shift, then the vertical kernels' reach

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if cfg.architecture == "pixelcnn":
            h = self.stem(x)
            for block in self.blocks:
                h = block(h)
        elif cfg.architecture == "multiscale":
            h = self._head_input(self.streams(x), x)
        else:
            v = F.pad(x, (0, 0, 1, 0))[:, :, :-1]  # shifted down one row: the vertical stack sees only rows above
            h = x
            for layer in self.layers:
                v, h = layer(v, h)
        logits = self.head(h)
        b, _, height, width = x.shape
        if cfg.pixel_levels == 2:
            return logits  # (B, C, H, W)
        return logits.view(b, cfg.in_channels, cfg.pixel_levels, height, width)

    def _head_input(self, streams: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The multiscale head's hidden layer: the streams (earlier pixels only, so any output feature may read them)
        plus, through mask A, the current pixel's earlier colours (nothing for one channel)."""
        h = self.head_streams(F.elu(streams))
        return h if self.head_colours is None else h + self.head_colours(x)

    def forward_row(self, x: torch.Tensor, r: int, cache: dict) -> torch.Tensor:
        """Row r of `forward(x)` for the multiscale architecture, (B, C, 1, W) or (B, C, K, 1, W), from the rows
        above kept in `cache` (MultiscaleStreams.forward_row says how to call it)."""
        if self.config.architecture != "multiscale":
            raise NotImplementedError("forward_row needs the multiscale architecture")
        logits = self.head(self._head_input(self.streams.forward_row(x, r, cache), x[:, :, r : r + 1]))
        if self.config.pixel_levels == 2:
            return logits
        return logits.view(x.shape[0], self.config.in_channels, self.config.pixel_levels, 1, x.shape[-1])

    def log_prob(self, levels: torch.Tensor) -> torch.Tensor:
        """log p(value) of every value (B, C, H, W) given the values before it, in nats; levels are integers
        0..K-1 (0/1 for binarized data). Their sum over C, H, W is the exact log-likelihood log p(x)."""
        return value_log_probs(self(to_input(levels, self.config.pixel_levels).to(self.dtype)), levels)


def value_log_probs(logits: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """log p of each observed value from the network's logits: Bernoulli logits (B, C, H, W), or categorical
    logits (B, C, K, H, W) normalized over K by log-softmax. (B, C, H, W) in nats, in float32 at least: a
    log-softmax over 256 levels in bf16 would lose the likelihood's digits (hubgen.metrics.units)."""
    logits = at_least_float32(logits)
    if logits.ndim == 4:
        return -F.binary_cross_entropy_with_logits(logits, levels.to(logits.dtype), reduction="none")
    return F.log_softmax(logits, dim=2).gather(2, levels.long().unsqueeze(2)).squeeze(2)


def to_input(levels: torch.Tensor, pixel_levels: int) -> torch.Tensor:
    """Integer levels 0..K-1 -> the network's input in [-1, 1]."""
    return levels.float() * (2.0 / (pixel_levels - 1)) - 1.0


@torch.no_grad()
def sample_levels(model: PixelCNNModel, batch_size: int, generator: torch.Generator | list | None = None,
                  temperature: float = 1.0, fast: bool = True, known: torch.Tensor | None = None,
                  known_mask: torch.Tensor | None = None, progress=None) -> torch.Tensor:  # fmt: skip
    """Draw integer levels (B, C, H, W) value by value in raster order, R -> G -> B within a pixel.

    Every value costs one network pass (its conditional needs the values drawn just before it). `fast=False` runs
    the network on the whole image each time (the naive sampler); `fast=True` runs it on the `receptive_rows` rows
    above the current one and that row only, which gives the same conditionals because no output depends on
    anything else (zero padding at the window's top edge changes only rows that the window's bottom row does not
    read). The multiscale network sees every row above, so there `fast=True` keeps every intermediate tensor's
    rows above in a cache and computes only the current row of each (`forward_row`): only the rows at and below the
    current one change. Both draw one uniform u per value and image from `generator`, in the same order, and take
    the level whose cumulative probability first exceeds u: the same generator gives the same images. With a list
    of generators, image i's values come from generator i (hubgen.draws): the image a one-image call with it gives.
    `known` levels where `known_mask` is True are kept (completion: the rest is drawn conditioned on the values
    before it in raster order); `temperature` divides the logits.
    """
    cfg = model.config
    c, s, k = cfg.in_channels, cfg.sample_size, cfg.pixel_levels
    device = model.device
    levels = torch.zeros(batch_size, c, s, s, dtype=torch.long, device=device)
    if known is not None:
        levels = torch.where(known_mask.to(device), known.to(device).long(), levels)
    reach = model.receptive_rows
    incremental = fast and cfg.architecture == "multiscale"
    cache, cached_rows = {}, 0  # rows < cached_rows hold their final values in the cache
    for r in range(s):
        top = max(0, r - reach) if fast else 0
        bottom = r + 1 if fast else s
        for col in range(s):
            for ch in range(c):
                u = rand_tensor((batch_size,), generator, device)  # (B,); a list: u_i from generator i
                if known_mask is not None and bool(known_mask[:, ch, r, col].all()):
                    continue
                if incremental:
                    x = to_input(levels, k).to(model.dtype)
                    for done in range(cached_rows, r):  # rows completed since the last pass: their final values
                        model.forward_row(x, done, cache)
                    cached_rows, row = r, 0
                    logits = model.forward_row(x, r, cache)
                else:
                    logits, row = model(to_input(levels[:, :, top:bottom], k).to(model.dtype)), r - top
                if k == 2:
                    p1 = torch.sigmoid(logits[:, ch, row, col].double() / temperature)
                    value = (u.double() < p1).long()
                else:
                    probs = torch.softmax(logits[:, ch, :, row, col].double() / temperature, dim=1)  # (B, K)
                    value = (probs.cumsum(1) < u.double()[:, None]).sum(1).clamp(max=k - 1)
                keep = known_mask[:, ch, r, col].to(device) if known_mask is not None else None
                levels[:, ch, r, col] = value if keep is None else torch.where(keep, levels[:, ch, r, col], value)
        if progress is not None:
            progress(r + 1, s)
    return levels
