"""Network and activation descriptions that need no JAX: the config layer and the
explorer's setup screen validate against them before JAX is imported (start-up time).

:class:`NetworkSpec` is the static description of an MLP (see :mod:`core.networks` for the
parametrisation); activation names are checked here, their functions live in
:mod:`core.activations` (a test keeps the two name lists equal).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ACTIVATION_NAMES: tuple[str, ...] = (
    "softplus",
    "relu",
    "sigmoid",
    "tanh",
    "erf",
    "normal_cdf",
    "gelu",
    "silu",
    "square",
    "cube",
    "identity",
    "g",
    "exp",
    "selu",
    "he1",
    "he2",
    "he3",
    "he4",
)
#: Other names accepted for an activation.  ``sigmoid2`` is MLPGradientFlow's name for
#: erf(z/√2), ``tanh_fast`` and ``sigmoid_fast`` its fast tanh and sigmoid (the same
#: functions; its ``sigmoid`` is ``sigmoid_fast``).  (``g`` was an alias of
#: ``erf`` before session schema 3; it is now MLPGradientFlow's g(z) = sigmoid(4z) +
#: softplus(z) — see :data:`LEGACY_ALIASES`.)
ALIASES = {
    "linear": "identity",
    "id": "identity",
    "sigmoid2": "erf",
    "tanh_fast": "tanh",
    "sigmoid_fast": "sigmoid",
}
#: Names whose meaning changed, with what they meant before session schema 3.  Sessions
#: saved with an older schema are read with these (:func:`core.session.load_session`).
LEGACY_ALIASES = {"g": "erf"}
#: Parity of an activation: −1 odd, σ(−z) = −σ(z) (so (w, a) and (−w, −a) are the same
#: neuron); +1 even, σ(−z) = σ(z) (so (w, a) and (−w, a) are); absent: neither.  The one
#: table (:attr:`core.activations.Activation.parity`, :mod:`core.analysis`' teacher
#: matching, :mod:`core.symmetry`'s sign flips); tests/test_activations.py checks it
#: against every registered function.
PARITY: dict[str, int] = {
    "erf": -1,
    "tanh": -1,
    "identity": -1,
    "cube": -1,
    "he1": -1,
    "he3": -1,
    "square": 1,
    "he2": 1,
    "he4": 1,
}
ODD_ACTIVATIONS = frozenset(name for name, p in PARITY.items() if p == -1)
EVEN_ACTIVATIONS = frozenset(name for name, p in PARITY.items() if p == 1)


def activation_names() -> list[str]:
    """All accepted activation names, canonical names first, then aliases."""
    return sorted(ACTIVATION_NAMES) + sorted(ALIASES)


def canonical_activation(name: str) -> str:
    """The canonical name of an activation or alias; ``ValueError`` naming the options."""
    key = ALIASES.get(name, name)
    if key not in ACTIVATION_NAMES:
        raise ValueError(
            f"unknown activation {name!r}; choose one of {', '.join(activation_names())}"
        )
    return key


@dataclass(frozen=True)
class NetworkSpec:
    """Static description of an MLP; hashable so it can key jit caches.

    Attributes:
        input_dim: d, the input dimension.
        widths: hidden layer widths (k₁, …, k_{L−1}); may be empty (a linear model).
        output_dim: k_L.
        activations: per hidden layer, a tuple of canonical activation names, one per neuron.
        bias: per layer (hidden layers then output layer), whether it has a bias.
        output: canonical activation name φ applied elementwise to the output layer,
            f = φ(W_L h^{L−1} + b_L); "identity" (the default) for a linear output.
    """

    input_dim: int
    widths: tuple[int, ...]
    output_dim: int
    activations: tuple[tuple[str, ...], ...]
    bias: tuple[bool, ...]
    output: str = "identity"

    def __post_init__(self) -> None:
        if self.input_dim < 1:
            raise ValueError(f"input_dim must be ≥ 1, got {self.input_dim}")
        if any(k < 1 for k in self.widths):
            raise ValueError(f"hidden widths must be ≥ 1, got {list(self.widths)}")
        if self.output_dim < 1:
            raise ValueError(f"output_dim must be ≥ 1, got {self.output_dim}")
        if len(self.activations) != len(self.widths):
            raise ValueError("need one activation tuple per hidden layer")
        for k, acts in zip(self.widths, self.activations, strict=True):
            if len(acts) != k:
                raise ValueError(f"layer of width {k} has {len(acts)} activations")
        if len(self.bias) != len(self.widths) + 1:
            raise ValueError("need one bias flag per layer (hidden layers and output)")
        if self.output not in ACTIVATION_NAMES:
            raise ValueError(f"output activation {self.output!r} is not a canonical name")

    @property
    def linear_output(self) -> bool:
        """Whether the output layer is linear (φ = identity)."""
        return self.output == "identity"

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """(d, k₁, …, k_L)."""
        return (self.input_dim, *self.widths, self.output_dim)

    @property
    def n_layers(self) -> int:
        """L, the number of weight matrices."""
        return len(self.widths) + 1

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Named parameter shapes in flat order."""
        out: dict[str, tuple[int, ...]] = {}
        sizes = self.layer_sizes
        for l in range(1, self.n_layers + 1):
            out[f"w{l}"] = (sizes[l], sizes[l - 1])
            if self.bias[l - 1]:
                out[f"b{l}"] = (sizes[l],)
        return out

    @property
    def n_params(self) -> int:
        """P, the length of θ."""
        return int(sum(np.prod(s) for s in self.shapes.values()))

    def offsets(self) -> dict[str, slice]:
        """Slice of θ occupied by each named parameter."""
        out, start = {}, 0
        for name, shape in self.shapes.items():
            size = int(np.prod(shape))
            out[name] = slice(start, start + size)
            start += size
        return out


def make_spec(
    input_dim: int,
    widths: Sequence[int],
    activation: str | Sequence[str] | Sequence[Sequence[str]] = "softplus",
    bias: bool | Sequence[bool] = True,
    output_dim: int = 1,
    output: str = "identity",
) -> NetworkSpec:
    """Build a :class:`NetworkSpec` from user-friendly arguments.

    ``activation`` is one name for every hidden neuron, a list with one name per
    hidden layer, or a list of per-neuron tuples (one per hidden layer).  For a
    single hidden layer a flat list of length k₁ is read as per-neuron names.
    ``bias`` is one flag for every layer or one per layer (hidden and output).
    ``output`` names the output layer's activation φ (an alias is resolved).
    """
    widths = tuple(int(k) for k in widths)
    if isinstance(activation, str):
        per_layer: list = [activation] * len(widths)
    else:
        per_layer = list(activation)
        if (
            len(widths) == 1
            and len(per_layer) == widths[0]
            and all(isinstance(a, str) for a in per_layer)
            and widths[0] != 1
        ):
            per_layer = [tuple(per_layer)]
        if len(per_layer) != len(widths):
            raise ValueError(
                f"activation list has {len(per_layer)} entries for {len(widths)} hidden layers"
            )
    acts: list[tuple[str, ...]] = []
    for k, a in zip(widths, per_layer, strict=True):
        names = (a,) * k if isinstance(a, str) else tuple(a)
        acts.append(tuple(canonical_activation(n) for n in names))
    if isinstance(bias, bool | np.bool_):
        bias_t = (bool(bias),) * (len(widths) + 1)
    else:
        bias_t = tuple(bool(b) for b in bias)
    out = canonical_activation(output)
    return NetworkSpec(int(input_dim), widths, int(output_dim), tuple(acts), bias_t, out)
