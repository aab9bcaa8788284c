"""The invertible layers of a multi-scale flow, each with its log-determinant.

Every transform maps a batch one way and back:

    forward(x) -> (y, log_det)      log_det = log |det dy/dx|, one number per example, shape (B,)
    inverse(y) -> (x, log_det)      log_det = log |det dx/dy| = minus the forward one at the same point

so that densities follow the change of variables log p_x(x) = log p_y(f(x)) + log |det df/dx|
(Dinh et al., RealNVP, arXiv:1605.08803, eq. (3)). Tensors are (B, C, H, W); shapes are in the comments.

Layers of the flow (Kingma & Dhariwal, Glow, arXiv:1807.03039, Table 1):
- `Squeeze`: 2x2 pixel blocks -> 4 channels (RealNVP section 3.6); a permutation, log_det = 0.
- `ActNorm`: y = x * exp(log_scale) + bias per channel, initialized from the data once (its `initialized`
  flag is a saved buffer, so a reloaded model is not initialized again).
- `InvertibleConv1x1`: y = W x per pixel with W = P L (U + diag(s)) (Glow eq. (10)); log_det = H W sum log|s|.
- `AffineCoupling`: half the channels pass, the other half is shifted and scaled by a network of the first;
  the scale is sigmoid(raw + 2) in (0, 1), bounded, as in Glow's released code.
- `Split`: factor-out of half the channels (RealNVP section 3.6) with a learned Gaussian prior conditioned on
  the kept half; written as the bijection x_b -> eps = (x_b - mean) / sigma, so the factored half leaves as
  eps ~ N(0, I) and log_det = -sum log sigma.
- `LearnedPrior`: the same standardization for the last scale, with a learned mean and scale per entry.

Preprocessing (grey levels k in {0..L-1} -> model space):
- `UniformDequantization`: k -> k + u, u ~ U[0, 1)^D; `VariationalDequantization`: u ~ q(u|k), a small
  conditional flow (Ho et al., Flow++, arXiv:1902.00275, section 3.1). Both return -log q(u|k) where a
  bijection returns its log_det (0 for the uniform one): it enters the bound
      log P(k) >= E_q[log p(k + u) - log q(u|k)]
  in the same place. Their inverse is the quantization floor(y) (log_det 0): they are not bijections.
- `Scale`: y = x / L, log_det = -D log L; `Logit`: y = logit(alpha + (1 - 2 alpha) x) (RealNVP section
  4.1, symmetric form of hubgen.metrics.units); `Center`: y = x - 1/2 (Glow's input range), log_det 0.
"""

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..draws import rand_tensor, randn_tensor
from ..errors import UserInputError
from ..metrics.units import inverse_logit_transform, logit_transform, logit_transform_log_det

__all__ = [
    "Squeeze",
    "ActNorm",
    "actnorm_statistics",
    "InvertibleConv1x1",
    "lu_weight",
    "lu_inverse_weight",
    "without_autocast",
    "autocast_dtype",
    "AffineCoupling",
    "affine_coupling",
    "affine_coupling_inverse",
    "ReLU",
    "relu_",
    "coupling_network",
    "coupling_network_forward",
    "Split",
    "LearnedPrior",
    "UniformDequantization",
    "VariationalDequantization",
    "Scale",
    "Logit",
    "Center",
    "squeeze",
    "unsqueeze",
    "standard_normal_log_prob",
]

LOG_2PI = math.log(2 * math.pi)


def _zeros(x: torch.Tensor) -> torch.Tensor:
    return x.new_zeros(x.shape[0])


def _per_example(value: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A log-determinant that is the same for every example -> (B,)."""
    return value.expand(x.shape[0])


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over all but the batch dimension: -1/2 sum_j (z_j^2 + log 2 pi) -> (B,)."""
    return -0.5 * (z.square() + LOG_2PI).flatten(1).sum(1)


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 4C, H/2, W/2): channel 4c + 2i + j holds pixel (2h + i, 2w + j) of channel c."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // 2, 2, w // 2, 2)  # (B, C, H/2, 2, W/2, 2)
    return x.permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)


def unsqueeze(y: torch.Tensor) -> torch.Tensor:
    """(B, 4C, H, W) -> (B, C, 2H, 2W): the inverse of `squeeze`."""
    b, c4, h, w = y.shape
    y = y.reshape(b, c4 // 4, 2, 2, h, w)  # (B, C, 2, 2, H, W)
    return y.permute(0, 1, 4, 2, 5, 3).reshape(b, c4 // 4, 2 * h, 2 * w)


class Squeeze(nn.Module):
    """Trade space for channels (RealNVP section 3.6). A permutation of the entries: log_det = 0."""

    def forward(self, x):
        if x.shape[2] % 2 or x.shape[3] % 2:
            raise UserInputError(f"Squeeze needs an even height and width, got {tuple(x.shape[2:])}.")
        return squeeze(x), _zeros(x)

    def inverse(self, y):
        return unsqueeze(y), _zeros(y)


class ActNorm(nn.Module):
    """Activation normalization (Glow section 3.1): y = x * exp(log_scale) + bias, one pair per channel.

    Data-dependent initialization: the first forward pass in training mode (or an explicit `initialize(x)`)
    sets the parameters so that y has zero mean and unit variance per channel on that batch. The flag
    `initialized` is a persistent buffer: it is saved with the weights, so a reloaded model keeps its learned
    parameters instead of initializing them again from its first batch.
        log_det = H W sum_c log_scale_c
    """

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(1, num_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, num_channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(False))
        self.eps = eps
        self._seen_initialized = False  # a cache of the buffer, so training does not read it at every step

    def _load_from_state_dict(self, *args, **kwargs):
        self._seen_initialized = False  # the buffer may change: read it again
        super()._load_from_state_dict(*args, **kwargs)

    def is_initialized(self) -> bool:
        if not self._seen_initialized:
            self._seen_initialized = bool(self.initialized)
        return self._seen_initialized

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Set log_scale = -log std_c(x), bias = -mean_c(x) / std_c(x) over (B, H, W), once."""
        log_scale, bias = actnorm_statistics(x, self.eps)
        self.log_scale.copy_(log_scale.view_as(self.log_scale))
        self.bias.copy_(bias.view_as(self.bias))
        self.initialized.fill_(True)
        self._seen_initialized = True

    def _maybe_initialize(self, x):
        if self.training and not self.is_initialized():
            self.initialize(x)

    def forward(self, x):
        self._maybe_initialize(x)
        y = x * torch.exp(self.log_scale) + self.bias
        return y, _per_example(x.shape[2] * x.shape[3] * self.log_scale.sum(), x)

    def inverse(self, y):
        x = (y - self.bias) * torch.exp(-self.log_scale)
        return x, _per_example(-y.shape[2] * y.shape[3] * self.log_scale.sum(), y)


def actnorm_statistics(x: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """ActNorm's data-dependent initialization (Glow section 3.1) from a batch x (B, C, H, W): per channel c,
    log_scale_c = -log(std_c + eps) and bias_c = -mean_c exp(log_scale_c), over (B, H, W), so that
    x exp(log_scale) + bias has zero mean and unit variance per channel. Returns (log_scale (C,), bias (C,))."""
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3), unbiased=False)
    log_scale = -torch.log(std + eps)
    return log_scale, -mean * torch.exp(log_scale)


def lu_factors(lower, upper, sign_s, log_s):
    """Glow eq. (10)'s factors from their free parameters, batched over any leading dimensions: the unit lower
    triangular L = tril(lower, -1) + I and U + diag(s) = triu(upper, 1) + diag(sign_s * exp(log_s))."""
    eye = torch.eye(log_s.shape[-1], dtype=log_s.dtype, device=log_s.device)
    return torch.tril(lower, -1) + eye, torch.triu(upper, 1) + torch.diag_embed(sign_s * torch.exp(log_s))


def lu_weight(permutation, lower, upper, sign_s, log_s) -> torch.Tensor:
    """W = P L (U + diag(s)) (Glow eq. (10)) from its parameters, batched over any leading dimensions: (..., C, C)."""
    lower, upper = lu_factors(lower, upper, sign_s, log_s)
    return permutation @ (lower @ upper)


def lu_inverse_weight(permutation, lower, upper, sign_s, log_s) -> torch.Tensor:
    """W^-1 = (U + diag(s))^-1 L^-1 P^T by two triangular solves, batched like `lu_weight`: in at least float32 (the
    solves have no half-precision kernels on the CPU, and an inverse is where precision matters), returned in the
    parameters' dtype."""
    lower, upper = (f.float() if f.dtype in (torch.float16, torch.bfloat16) else f
                    for f in lu_factors(lower, upper, sign_s, log_s))  # fmt: skip
    eye = torch.eye(lower.shape[-1], dtype=lower.dtype, device=lower.device)
    lower_inv = torch.linalg.solve_triangular(lower, eye, upper=False, unitriangular=True)
    w_inv = torch.linalg.solve_triangular(upper, lower_inv, upper=True) @ permutation.mT.to(lower.dtype)
    return w_inv.to(log_s.dtype)


class InvertibleConv1x1(nn.Module):
    """Invertible 1x1 convolution, LU-parameterized (Glow section 3.2, eq. (10)):

        W = P L (U + diag(s)),   log |det dy/dx| = H W sum_c log |s_c|

    with P a fixed permutation, L unit lower triangular, U strictly upper triangular and s = sign * exp(log_s)
    (the signs fixed). W starts as a random rotation (drawn from torch's global RNG), so log_det starts at 0.
    The weight is assembled once per call; the inverse uses two triangular solves instead of a matrix inverse.
    """

    def __init__(self, num_channels: int):
        super().__init__()
        # float32 whatever the default dtype (diffusers builds the model under the dtype= a user loads it in; QR and
        # LU have no bfloat16 kernels on the CPU); the loaded weights replace these and are cast afterwards
        q, _ = torch.linalg.qr(torch.randn(num_channels, num_channels, dtype=torch.float32))
        p, lower, upper = torch.linalg.lu(q)
        s = torch.diagonal(upper)
        self.register_buffer("permutation", p)
        self.register_buffer("sign_s", torch.sign(s))
        self.lower = nn.Parameter(torch.tril(lower, -1))
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(s.abs()))

    def _lu_tensors(self):
        return self.permutation, self.lower, self.upper, self.sign_s, self.log_s

    def weight(self) -> torch.Tensor:
        """W = P L (U + diag(s)), (C, C)."""
        return lu_weight(*self._lu_tensors())

    def inverse_weight(self) -> torch.Tensor:
        """W^-1, (C, C): `lu_inverse_weight`."""
        return lu_inverse_weight(*self._lu_tensors())

    def log_det_per_pixel(self) -> torch.Tensor:
        return self.log_s.sum()

    def forward(self, x):
        with without_autocast(x):
            w = self.weight()
            y = F.conv2d(x.to(w.dtype), w[:, :, None, None])  # y_bchw = sum_k W_ck x_bkhw
        return y, _per_example(x.shape[2] * x.shape[3] * self.log_det_per_pixel(), x)

    def inverse(self, y):
        with without_autocast(y):
            w_inv = self.inverse_weight()
            x = F.conv2d(y.to(w_inv.dtype), w_inv[:, :, None, None])
        return x, _per_example(-y.shape[2] * y.shape[3] * self.log_det_per_pixel(), y)


def without_autocast(x: torch.Tensor):
    """A context that turns mixed-precision autocast off (on x's device type), for the bijection's own data path:
    autocast would run the 1x1 convolution and its weight's matmuls in bf16/fp16. They are cheap (C x C per
    pixel), and in the weights' precision x, z = f(x) and the log-determinant sums stay float32, so that f^-1
    inverts f to float32 accuracy; only the coupling networks (the bulk of the compute) run in low precision.
    A no-op where autocast is off or has no such device type (e.g. "meta")."""
    active = autocast_dtype(x) is not None
    return torch.autocast(x.device.type, enabled=False) if active else contextlib.nullcontext()


def autocast_dtype(x: torch.Tensor) -> torch.dtype | None:
    """The dtype autocast casts to on x's device type, or None where it is off or knows no such device ("meta")."""
    try:
        active = torch.is_autocast_enabled(x.device.type)
    except RuntimeError:  # a device type autocast does not know
        return None
    return torch.get_autocast_dtype(x.device.type) if active else None


def split_channels(x: torch.Tensor, first: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x[:, :first], x[:, first:]) as one split: its gradient is one concatenation, where two slices' gradients
    would each be a zero tensor of x's size, a copy and a sum."""
    return x.split([first, x.shape[1] - first], dim=1)


class _SignBitReLU(torch.autograd.Function):
    """max(x, 0) of a bfloat16 tensor in place, read off the sign bit of its 16 bits: a float is negative exactly
    when its int16 pattern is, and +0 is the pattern 0, so relu(x) is the int16 clamp_min(bits, 0) and relu's
    derivative [y > 0] is the int16 test bits(y) > 0. On the CPU the int16 kernels run these about 7x (forward)
    and 2x (backward) faster than torch's bfloat16 ones, which widen every element to float32 and back (torch
    2.13, one thread: 51 -> 7.5 us and 61 -> 29 us on a 32 x 64 x 14 x 14 activation); the flow's 24 ReLUs are
    about 5% of a bf16 training step. The same values and gradients as torch.relu for every input but a NaN, which
    becomes 0 when its sign bit is set (torch keeps it). A convolution's output is NaN only for a non-finite input,
    which also reaches the loss through the coupling's unchanged half, or weight, which comes from a non-finite
    gradient that the training loop's clipping spreads to every parameter: the loss's NaN guard still sees both."""

    @staticmethod
    def forward(ctx, x):
        x.view(torch.int16).clamp_min_(0)
        ctx.mark_dirty(x)
        ctx.save_for_backward(x)
        return x

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return torch.ops.aten.threshold_backward(grad.view(torch.int16), y.view(torch.int16), 0).view(grad.dtype)


def relu_(x: torch.Tensor) -> torch.Tensor:
    """max(x, 0) in place: on the sign bit for bfloat16 CPU tensors (`_SignBitReLU`: bf16 autocast on the CPU), by
    torch.relu_ otherwise."""
    if x.dtype == torch.bfloat16 and x.device.type == "cpu":
        return _SignBitReLU.apply(x)
    return torch.relu_(x)


class ReLU(nn.Module):
    """`relu_` as a layer. No parameters: the coupling networks' state_dict keys are those of nn.ReLU."""

    def forward(self, x):
        return relu_(x)


def coupling_network(in_channels: int, hidden_channels: int, out_channels: int) -> nn.Sequential:
    """Glow's coupling network NN(): conv3x3 - ReLU - conv1x1 - ReLU - conv3x3, the last conv zero-initialized
    so that every coupling starts as the identity (Glow section 3.3)."""
    last = nn.Conv2d(hidden_channels, out_channels, 3, padding=1)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden_channels, 3, padding=1),
        ReLU(),
        nn.Conv2d(hidden_channels, hidden_channels, 1),
        ReLU(),
        last,
    )


def coupling_network_forward(x: torch.Tensor, weights) -> torch.Tensor:
    """`coupling_network`'s function with its six tensors given: weights = (w_in, b_in, w_hidden, b_hidden, w_out,
    b_out) of its three convolutions (3x3, 1x1, 3x3). For parameters kept outside an nn.Conv2d (modeling_flow's
    FlowLevel stacks those of a scale's K networks)."""
    w_in, b_in, w_hidden, b_hidden, w_out, b_out = weights
    h = relu_(F.conv2d(x, w_in, b_in, padding=1))
    h = relu_(F.conv2d(h, w_hidden, b_hidden))
    return F.conv2d(h, w_out, b_out, padding=1)


def _shift_and_log_scale(net, x_a):
    # NN(x_a) may run in bf16/fp16 under autocast; the affine map and its log-det sum (B,) are computed in the data's
    # precision (float32): a bf16 sum over C*H*W log-scales would lose the likelihood's digits
    shift, raw = net(x_a).to(x_a.dtype).chunk(2, dim=1)  # (B, C_b, H, W) each
    return shift, F.logsigmoid(raw + 2.0)


def affine_coupling(x: torch.Tensor, num_pass: int, net) -> tuple[torch.Tensor, torch.Tensor]:
    """`AffineCoupling`'s forward with its network `net` (a callable: x_a -> NN(x_a), the shift t and the raw scale r
    along the channels): (y, log |det dy/dx| (B,))."""
    x_a, x_b = split_channels(x, num_pass)
    shift, log_s = _shift_and_log_scale(net, x_a)
    y_b = (x_b + shift) * torch.exp(log_s)
    return torch.cat([x_a, y_b], dim=1), log_s.sum((1, 2, 3))


def affine_coupling_inverse(y: torch.Tensor, num_pass: int, net) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse of `affine_coupling`: x_b = y_b / s - t, (x, log |det dx/dy| (B,))."""
    y_a, y_b = split_channels(y, num_pass)
    shift, log_s = _shift_and_log_scale(net, y_a)
    x_b = y_b * torch.exp(-log_s) - shift
    return torch.cat([y_a, x_b], dim=1), -log_s.sum((1, 2, 3))


class AffineCoupling(nn.Module):
    """Affine coupling (RealNVP section 3.3; Glow Table 1, with the sigmoid scale of Glow's released code):

        x_a, x_b = x[:, :C_a], x[:, C_a:]
        (t, r) = NN(x_a),  s = sigmoid(r + 2)
        y_a = x_a,  y_b = (x_b + t) * s,           log |det dy/dx| = sum log s

    s lies in (0, 1): the scale cannot blow up, and at initialization (NN = 0) s = sigmoid(2), about 0.88.
    log s is computed as logsigmoid(r + 2), which is finite for any r.
    """

    def __init__(self, num_channels: int, hidden_channels: int):
        super().__init__()
        if num_channels < 2:
            raise UserInputError(f"An affine coupling needs at least 2 channels, got {num_channels}.")
        self.num_pass = num_channels // 2
        self.net = coupling_network(self.num_pass, hidden_channels, 2 * (num_channels - self.num_pass))

    def forward(self, x):
        return affine_coupling(x, self.num_pass, self.net)

    def inverse(self, y):
        return affine_coupling_inverse(y, self.num_pass, self.net)


class Split(nn.Module):
    """Factor out half the channels with a learned Gaussian prior (RealNVP section 3.6; Glow's split prior):

        x_a, x_b = x[:, :C_a], x[:, C_a:];   (mean, log_sigma) = conv3x3(x_a)  (zero-initialized)
        p(x_b | x_a) = N(x_b; mean, sigma^2)
        y = (x_a, eps),  eps = (x_b - mean) / sigma,     log |det dy/dx| = -sum log sigma

    so log p(x_b | x_a) = log N(eps; 0, I) - sum log sigma: the factored half leaves the flow as standard
    normal noise eps, and the flow continues on x_a. Sampling at temperature T draws eps ~ N(0, T^2 I).
    """

    def __init__(self, num_channels: int):
        super().__init__()
        self.num_keep = num_channels - num_channels // 2
        self.prior = nn.Conv2d(self.num_keep, 2 * (num_channels - self.num_keep), 3, padding=1)
        nn.init.zeros_(self.prior.weight)
        nn.init.zeros_(self.prior.bias)

    def forward(self, x):
        x_a, x_b = split_channels(x, self.num_keep)
        mean, log_sigma = self.prior(x_a).to(x_a.dtype).chunk(2, dim=1)  # the data's precision under autocast
        eps = (x_b - mean) * torch.exp(-log_sigma)
        return torch.cat([x_a, eps], dim=1), -log_sigma.sum((1, 2, 3))

    def inverse(self, y):
        y_a, eps = split_channels(y, self.num_keep)
        mean, log_sigma = self.prior(y_a).to(y_a.dtype).chunk(2, dim=1)
        x_b = mean + torch.exp(log_sigma) * eps
        return torch.cat([y_a, x_b], dim=1), log_sigma.sum((1, 2, 3))


class LearnedPrior(nn.Module):
    """The last scale's prior N(mean, sigma^2), one learned mean and log sigma per entry (zero-initialized):
    eps = (x - mean) / sigma,  log |det deps/dx| = -sum log sigma."""

    def __init__(self, shape: tuple[int, int, int]):
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(1, *shape))
        self.log_sigma = nn.Parameter(torch.zeros(1, *shape))

    def forward(self, x):
        eps = (x - self.mean) * torch.exp(-self.log_sigma)
        return eps, _per_example(-self.log_sigma.sum(), x)

    def inverse(self, eps):
        return self.mean + torch.exp(self.log_sigma) * eps, _per_example(self.log_sigma.sum(), eps)


# -- preprocessing ----------------------------------------------------------------------------------------


class UniformDequantization(nn.Module):
    """k -> k + u, u ~ U[0, 1)^D (Theis et al., arXiv:1511.01844, section 3.1).

    Returns -log q(u|k) = 0 (q is uniform on the unit cube) as its log_det. The inverse quantizes:
    floor(y), log_det 0.
    """

    def forward(self, k, generator=None):
        u = rand_tensor(k.shape, generator, k.device, k.dtype)
        return k + u, _zeros(k)

    def inverse(self, y):
        return torch.floor(y), _zeros(y)


class VariationalDequantization(nn.Module):
    """Variational dequantization (Ho et al., Flow++, arXiv:1902.00275, section 3.1): u ~ q(u|k) on [0, 1)^D,

        log P(k) >= E_{u ~ q}[log p(k + u) - log q(u|k)]

    q is a small conditional flow of Gaussian noise eps ~ N(0, I), in squeezed space (B, 4C, H/2, W/2):
        h = CNN(k / (L - 1) - 1/2)                                         the context
        e = eps * exp(a(h)) + m(h)                                         elementwise affine
        e_b <- (e_b + t(e_a, h)) * sigmoid(r(e_a, h) + 2)   (x num_steps)  couplings, halves swapped between
        u = sigmoid(unsqueeze(e))
    log q(u|k) = log N(eps; 0, I) - log |det du/deps|. `forward(k)` returns (k + u, -log q(u|k)); the
    inverse quantizes (floor). `noise(eps, k)` / `noise_inverse(u, k)` are the bijection eps <-> u for a given
    k, with its log-determinant.
    """

    def __init__(self, in_channels: int, pixel_levels: int, hidden_channels: int = 32, num_steps: int = 2):
        super().__init__()
        c = 4 * in_channels
        self.pixel_levels = pixel_levels
        self.context = nn.Sequential(
            nn.Conv2d(c, hidden_channels, 3, padding=1),
            ReLU(),
            nn.Conv2d(hidden_channels, hidden_channels, 3, padding=1),
            ReLU(),
        )
        self.elementwise = nn.Conv2d(hidden_channels, 2 * c, 3, padding=1)
        nn.init.zeros_(self.elementwise.weight)
        nn.init.zeros_(self.elementwise.bias)
        self.num_pass = c // 2
        self.couplings = nn.ModuleList(
            [coupling_network(self.num_pass + hidden_channels, hidden_channels, 2 * (c - self.num_pass))
             for _ in range(num_steps)]
        )  # fmt: skip

    def _context(self, k):
        return self.context(squeeze(k / (self.pixel_levels - 1) - 0.5))  # (B, hidden, H/2, W/2)

    def _coupling(self, net, e_a, h):
        shift, raw = net(torch.cat([e_a, h], dim=1)).chunk(2, dim=1)
        return shift, F.logsigmoid(raw + 2.0)

    def noise(self, eps, k):
        """eps (B, C, H, W) -> u in (0, 1), and log |det du/deps| (B,), given grey levels k."""
        h = self._context(k)
        log_a, m = self.elementwise(h).chunk(2, dim=1)
        e = squeeze(eps) * torch.exp(log_a) + m  # (B, 4C, H/2, W/2)
        log_det = log_a.flatten(1).sum(1)
        for net in self.couplings:
            e_a, e_b = e[:, : self.num_pass], e[:, self.num_pass :]
            shift, log_s = self._coupling(net, e_a, h)
            e = torch.cat([(e_b + shift) * torch.exp(log_s), e_a], dim=1)  # transformed half first: swap
            log_det = log_det + log_s.flatten(1).sum(1)
        e = unsqueeze(e)
        # u = sigmoid(e): du/de = sigmoid(e) sigmoid(-e)
        log_det = log_det + (F.logsigmoid(e) + F.logsigmoid(-e)).flatten(1).sum(1)
        return torch.sigmoid(e), log_det

    def noise_inverse(self, u, k):
        """u in (0, 1) -> eps, and log |det deps/du| (B,): the inverse of `noise`."""
        h = self._context(k)
        e = torch.log(u) - torch.log1p(-u)  # logit
        log_det = -(F.logsigmoid(e) + F.logsigmoid(-e)).flatten(1).sum(1)
        e = squeeze(e)
        c_b = e.shape[1] - self.num_pass
        for net in reversed(self.couplings):
            y_b, e_a = e[:, :c_b], e[:, c_b:]
            shift, log_s = self._coupling(net, e_a, h)
            e = torch.cat([e_a, y_b * torch.exp(-log_s) - shift], dim=1)
            log_det = log_det - log_s.flatten(1).sum(1)
        log_a, m = self.elementwise(h).chunk(2, dim=1)
        eps = (e - m) * torch.exp(-log_a)
        return unsqueeze(eps), log_det - log_a.flatten(1).sum(1)

    def forward(self, k, generator=None):
        eps = randn_tensor(k.shape, generator, k.device, k.dtype)
        u, log_det = self.noise(eps, k)
        log_q = standard_normal_log_prob(eps) - log_det  # log q(u|k) by the change of variables
        # u < 1 in exact arithmetic; in floating point sigmoid can round to 1, which would leave the bin.
        u = u.clamp(max=1.0 - torch.finfo(u.dtype).eps)
        return k + u, -log_q

    def inverse(self, y):
        return torch.floor(y), _zeros(y)


class Scale(nn.Module):
    """y = x / L: grey levels plus noise in [0, L) -> [0, 1). log |det dy/dx| = -D log L."""

    def __init__(self, pixel_levels: int):
        super().__init__()
        self.pixel_levels = pixel_levels

    def forward(self, x):
        return x / self.pixel_levels, _per_example(x.new_tensor(-x[0].numel() * math.log(self.pixel_levels)), x)

    def inverse(self, y):
        return y * self.pixel_levels, _per_example(y.new_tensor(y[0].numel() * math.log(self.pixel_levels)), y)


class Logit(nn.Module):
    """y = logit(alpha + (1 - 2 alpha) x) for x in [0, 1) (RealNVP section 4.1; hubgen.metrics.units):
    log |det dy/dx| = sum_j [log(1 - 2 alpha) - log s_j - log(1 - s_j)],  s_j = alpha + (1 - 2 alpha) x_j."""

    def __init__(self, alpha: float = 0.05):
        super().__init__()
        self.alpha = alpha

    def forward(self, x):
        return logit_transform(x, self.alpha), logit_transform_log_det(x, self.alpha)

    def inverse(self, y):
        x = inverse_logit_transform(y, self.alpha)
        return x, -logit_transform_log_det(x, self.alpha)


class Center(nn.Module):
    """y = x - 1/2: [0, 1) -> [-1/2, 1/2), Glow's input range. log_det = 0."""

    def forward(self, x):
        return x - 0.5, _zeros(x)

    def inverse(self, y):
        return y + 0.5, _zeros(y)
