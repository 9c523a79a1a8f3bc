"""The exact infinite-Gaussian-data Hessian assembled from the pair structure.

Setting and notation as in :mod:`core.gaussian`: student f(x) = Σ_i a_i σ_i(w_i·x) with
θ = (vec W, a) (W (n, d) row-major first, then a (n,): the layout of
:func:`core.networks.unflatten` for a bias-free one-hidden-layer net), teacher
g(x) = Σ_j b_j τ_j(v_j·x) (k neurons).  The *partners* of the students are the stacked
neurons u_q with coefficients c_q:

    mse:          u = (W; V), c = (a, −b)   (n + k partners),   L = ½ Σ_pq c_p c_q K_pq,
    correlation:  u = V,      c = −b        (k partners),       L = Σ_i a_i Σ_q c_q K_iq,

with K_iq = κ_iq(c₁₁, c₂₂, c₁₂) at (‖w_i‖², ‖u_q‖², w_i·u_q), κ_iq the pair kernel of
(σ_i, σ_q).  Writing κ(x, y) for κ(‖x‖², ‖y‖², x·y) and subscripts for partials in
(c₁₁, c₂₂, c₁₂) = (1, 2, 3), the gradient is (exact as an identity in θ, because
κ_pq(x, y) = κ_qp(y, x))

    ∂L/∂a_i = Σ_q c_q K_iq  (mse; the correlation loss has −Σ_j b_j K_ij),
    ∂L/∂w_i = a_i Σ_q c_q g_iq,     g_iq = ∂_x κ_iq(w_i, u_q) = 2 A_iq w_i + B_iq u_q,

A = κ₁, B = κ₃.  Differentiating once more, with A₁ = ∂₁A, A₂ = ∂₂A, A₃ = ∂₃A,
B₁ = ∂₁B, B₂ = ∂₂B, B₃ = ∂₃B (all at the pair (i, q), first argument i):

    ∂_x g(x, y) = 2A I + 4A₁ x xᵀ + 2A₃ x yᵀ + 2B₁ y xᵀ + B₃ y yᵀ         (=: D),
    ∂_y g(x, y) =  B I + 4A₂ x yᵀ + 2A₃ x xᵀ + 2B₂ y yᵀ + B₃ y xᵀ         (=: E),

so, for students i, j (δ the Kronecker delta; "mse:" terms are absent for correlation):

    ∂²L/∂w_i∂w_j = δ_ij a_i Σ_q c_q D(w_i, u_q)  +  mse: a_i a_j E(w_i, w_j),
    ∂²L/∂w_i∂a_j = δ_ij Σ_q c_q g_iq             +  mse: a_i g_ij,
    ∂²L/∂a_i∂a_j = mse: K_ij,

plus the barrier's diagonal.  A diagonal block collects every partner q, the student's
own pair q = i included (there D and E are both evaluated at (‖w_i‖², ‖w_i‖², ‖w_i‖²)).
Only the n × (n + k) scalar partials depend on the kernel; the sums over q are
Σ_q (c_q A_iq), Σ_q (c_q A₃_iq) u_q, …, and the one d × d term per student
Σ_q c_q B₃_iq u_q u_qᵀ, so the assembly costs O(n(n + k)d² + n²d²) flops and a few passes
over the (nd + n)² output, against the P-fold forward-mode sweep of ``jax.jacfwd``.

The scalar partials are the ones the gradient and its autodiff Hessian use:

* closed-form kernels: A, B are forward-mode JVPs of κ in c₁₁ and c₁₂ (as in
  ``core.gaussian``'s gradient) and the second partials JVPs of those in c₁₁, c₂₂, c₁₂
  (zero-norm and guarded-square-root conventions carry over unchanged);
* quadrature kernels: Price's theorem, E[·] over (u, v) ~ N(0, C):
  A = ½E[σ″τ], B = E[σ′τ′], A₁ = ¼E[σ⁗τ], A₂ = ¼E[σ″τ″], A₃ = B₁ = ½E[σ‴τ′],
  B₂ = ½E[σ′τ‴], B₃ = E[σ″τ″] (the custom JVP of ``core.gaussian._quadrature_kernel``).

relu·relu pairs are the exception.  The arc-cosine kernel behaves like (det C)^{3/2} near
parallel weights, so its second c-partials are unbounded there (like 1/sin θ) and D, E
would be large cancelling sums.  For those pairs D = ∂²_xx κ and E = ∂²_xy κ are written in
w-space (x̂ = x/|x|, p = ŷ − cos θ x̂, σ = x̂ + ŷ, δ = x̂ − ŷ, θ = 2 atan2(|δ|, |σ|)):

    ∂²_xx κ = |y|/(2π|x|) [p pᵀ/|p| + |p| (I − x̂x̂ᵀ)],
    ∂²_xy κ = (1/2π) [(π − θ) I + ½(|δ|/|σ|) σσᵀ − ½(|σ|/|δ|) δδᵀ],

finite with exact limits at θ = 0 (∂²_xx κ = 0, ∂²_xy κ = I/2) and θ = π (both 0), and 0 for
a zero-norm weight (the kernel's K = 0 convention).  So no point needs a fallback to
autodiff.  Where relu weights are exactly or nearly parallel the autodiff reference is the
less accurate one (it differentiates (det C)^{3/2} through rounding noise in det C, ~1e-8);
``tests/test_gaussian_hessian.py`` checks those points with exactly representable Gram
entries, the exact θ = 0, π blocks and the O(ε) approach to them.

The result is exactly symmetric by construction, without ½(H + Hᵀ) (see :func:`_assemble`).
:func:`autodiff_hessian` keeps the previous Hessian as the reference for tests and
``bench/gaussian.py --part hessian``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from core.gaussian import _CLOSED, _Derivative, _quadrature_kernel, pair_kernel
from core.networks import NetworkSpec, unflatten
from core.objectives import Objective, barrier

Array = jax.Array

_FIRST = ("A", "B")
_SECOND_ALL = ("A1", "A3", "B1", "B3")  # needed for every partner (the D term)
_SECOND_STUDENT = ("K", "A2", "B2")  # needed for student partners only (the E and aa terms)


def _closed_partials(a: str, b: str, n_nodes: int, c11, c22, c12, student: bool) -> dict:
    """Partials of a closed-form kernel by nested forward-mode JVPs (as the gradient's)."""
    kern = pair_kernel(a, b, n_nodes=n_nodes)
    ones = jnp.ones_like(c11)

    def k1(x, y, z):  # κ₁, the gradient's jvp in c₁₁
        return jax.jvp(lambda t: kern(t, y, z), (x,), (ones,))[1]

    def k3(x, y, z):  # κ₃, the gradient's jvp in c₁₂
        return jax.jvp(lambda t: kern(x, y, t), (z,), (ones,))[1]

    def d(f, arg: int):
        args = [c11, c22, c12]

        def g(t):
            args_t = list(args)
            args_t[arg] = t
            return f(*args_t)

        return jax.jvp(g, (args[arg],), (ones,))[1]

    out = {
        "A": k1(c11, c22, c12),
        "B": k3(c11, c22, c12),
        "A1": d(k1, 0),
        "A3": d(k1, 2),
        "B1": d(k3, 0),
        "B3": d(k3, 2),
    }
    if student:
        out |= {"K": kern(c11, c22, c12), "A2": d(k1, 1), "B2": d(k3, 1)}
    return out


def _quadrature_partials(a: str, b: str, n_nodes: int, c11, c22, c12, student: bool) -> dict:
    """Partials of a quadrature kernel by Price's theorem (one quadrature each)."""
    fa, fb = _Derivative(a), _Derivative(b)

    def q(i: int, j: int) -> Array:
        return _quadrature_kernel(fa.d(i), fb.d(j), n_nodes, c11, c22, c12)

    q22 = q(2, 2)
    q31 = q(3, 1)
    out = {
        "A": 0.5 * q(2, 0),
        "B": q(1, 1),
        "A1": 0.25 * q(4, 0),
        "A3": 0.5 * q31,
        "B1": 0.5 * q31,
        "B3": q22,
    }
    if student:
        out |= {"K": q(0, 0), "A2": 0.25 * q22, "B2": 0.5 * q(1, 3)}
    return out


def _partial_matrices(
    w1: Array,
    acts1: tuple[str, ...],
    w2: Array,
    acts2: tuple[str, ...],
    n_nodes: int,
    student: bool,
) -> dict[str, Array]:
    """The scalar partials of every pair (rows of w1) × (rows of w2), each (k₁, k₂).

    Keys ``A B A1 A3 B1 B3`` and, with ``student`` (w2 are the students), ``K A2 B2``.
    Neurons are grouped by activation as in ``core.gaussian._kernel_matrices``.
    """
    n1 = jnp.sum(w1 * w1, axis=1)
    n2 = jnp.sum(w2 * w2, axis=1)
    c12 = w1 @ w2.T

    def block(a: str, b: str, rows, cols) -> dict:
        c12b = c12 if rows is None else c12[np.ix_(rows, cols)]
        c11b = jnp.broadcast_to((n1 if rows is None else n1[rows])[:, None], c12b.shape)
        c22b = jnp.broadcast_to((n2 if cols is None else n2[cols])[None, :], c12b.shape)
        closed = (a, b) in _CLOSED or (b, a) in _CLOSED
        partials = _closed_partials if closed else _quadrature_partials
        return partials(a, b, n_nodes, c11b, c22b, c12b, student)

    names1, names2 = sorted(set(acts1)), sorted(set(acts2))
    if len(names1) == 1 and len(names2) == 1:
        return block(names1[0], names2[0], None, None)
    keys = _FIRST + _SECOND_ALL + (_SECOND_STUDENT if student else ())
    out = {key: jnp.zeros(c12.shape) for key in keys}
    for a in names1:
        rows = np.flatnonzero(np.array([s == a for s in acts1]))
        for b in names2:
            cols = np.flatnonzero(np.array([s == b for s in acts2]))
            idx = np.ix_(rows, cols)
            for key, value in block(a, b, rows, cols).items():
                out[key] = out[key].at[idx].set(value)
    return out


def _relu_mask(acts1: tuple[str, ...], acts2: tuple[str, ...]) -> np.ndarray:
    """(k₁, k₂) bool: the pairs whose kernel is relu·relu (assembled in w-space, see below)."""
    return np.array([[x == "relu" and y == "relu" for y in acts2] for x in acts1], dtype=bool)


def _unit(x: Array) -> tuple[Array, Array]:
    """(rows of x normalised, their norms); a zero row stays zero."""
    norm = jnp.sqrt(jnp.sum(x * x, axis=-1))
    pos = norm > 0.0
    return jnp.where(pos[..., None], x / jnp.where(pos, norm, 1.0)[..., None], 0.0), norm


def _ratio(num: Array, den: Array) -> Array:
    """num/den, 0 where den = 0 (the relu terms below vanish there)."""
    pos = den > 0.0
    return jnp.where(pos, num / jnp.where(pos, den, 1.0), 0.0)


def _swap_sum(x: Array, y: Array) -> Array:
    """x + y for two terms that trade places under a transposition, summed in an order that
    does not depend on which is which.

    XLA fuses these element-wise expressions into one loop and LLVM contracts a·b + c into
    fused multiply-adds, which would round the mirror entries (r, c) and (c, r) differently
    (x·y + z vs z·w + x); max + min hides the products from the addition, so the two mirror
    entries add the same two rounded numbers in the same order: exact symmetry.
    """
    return jnp.maximum(x, y) + jnp.minimum(x, y)


def structured_hessian(
    spec: NetworkSpec,
    acts_t: tuple[str, ...],
    theta: Array,
    v: Array,
    b: Array,
    *,
    mse: bool,
    maxnorm: float | None,
    n_nodes: int,
) -> Array:
    """∇²L (P, P), P = nd + n, of ``core.gaussian.gaussian_objective``'s loss (module docstring).

    ``spec`` is the student (bias-free, one hidden layer, scalar output; already checked by
    the objective), ``acts_t`` the teacher's activations, ``v`` (k, d) and ``b`` (k,) its
    weights; ``mse`` selects the loss (else correlation).  Traceable (called under jit).
    The result is exactly symmetric by construction (every term below is written so that
    its (r, c) and (c, r) entries are the same floating-point operations), which saves the
    full-matrix transpose that ½(H + Hᵀ) would cost.
    """
    p = unflatten(spec, theta)
    w, a = p["w1"], p["w2"][0]
    n = w.shape[0]
    acts_s = spec.activations[0]
    st = _partial_matrices(w, acts_s, v, acts_t, n_nodes, student=False)
    if mse:
        ss = _partial_matrices(w, acts_s, w, acts_s, n_nodes, student=True)
        part = {key: jnp.concatenate([ss[key], st[key]], axis=1) for key in _FIRST + _SECOND_ALL}
        u = jnp.concatenate([w, v], axis=0)
        c = jnp.concatenate([a, -b])
        relu = _relu_mask(acts_s, acts_s + tuple(acts_t))
    else:
        part, u, c = st, v, -b
        relu = _relu_mask(acts_s, tuple(acts_t))

    # ---- diagonal blocks: Σ_q c_q D(w_i, u_q) = coef_i I + Σ_k L_iαk R_iβk (n, d, d) with
    # the rank-one pieces coef_ww w wᵀ + w rᵀ + r wᵀ + Σ_q c_q B₃_iq u_q u_qᵀ in one batched
    # product, and Σ_q c_q g_iq (n, d).
    cg = jnp.where(relu, 0.0, 1.0) * c if relu.any() else c  # generic (c-space) pairs
    ones_q = jnp.ones(u.shape[0])
    coef_i = 2.0 * (part["A"] * cg) @ ones_q
    coef_ww = 4.0 * (part["A1"] * cg) @ ones_q
    r = ((part["A3"] + part["B1"]) * cg) @ u  # the symmetrised 2(w sᵀ + t wᵀ) of D
    left = [(part["B3"] * cg)[:, :, None] * u[None, :, :], w[:, None, :], r[:, None, :]]
    right = [
        jnp.broadcast_to(u, (n, *u.shape)),
        coef_ww[:, None, None] * w[:, None, :] + r[:, None, :],
    ]
    right.append(w[:, None, :])
    if relu.any():
        # relu·relu: D = ∂²_xx κ is singular in c-space (κ ∼ det C^{3/2} at coincidence), so
        # its c-partials are huge and cancel; in w-space, with x̂ = w/|w|, p = û − (x̂·û)x̂,
        # |p| = sin θ:  ∂²_xx κ = |u|/(2π|w|) [p pᵀ/|p| + |p| (I − x̂x̂ᵀ)]  (0 for |w|·|u| = 0).
        w_hat, w_norm = _unit(w)
        u_hat, u_norm = _unit(u)
        cos = w_hat @ u_hat.T
        pv = u_hat[None, :, :] - cos[:, :, None] * w_hat[:, None, :]  # (n, q, d)
        p_norm = jnp.sqrt(jnp.sum(pv * pv, axis=-1))
        scale = jnp.where(relu, c, 0.0) * _ratio(u_norm[None, :], 2.0 * jnp.pi * w_norm[:, None])
        iso = (scale * p_norm) @ ones_q
        coef_i = coef_i + iso
        left += [_ratio(scale, p_norm)[:, :, None] * pv, w[:, None, :]]
        right += [pv, -_ratio(iso, w_norm * w_norm)[:, None, None] * w[:, None, :]]
    rank = jnp.einsum(
        "ika,ikb->iab", jnp.concatenate(left, axis=1), jnp.concatenate(right, axis=1)
    )  # (n, d, d)
    b_diag = jnp.zeros_like(theta)
    if maxnorm is not None:
        # B is separable: its Hessian is diagonal, H·1 (the same JVP rules as autodiff).
        b_diag = jax.jvp(
            lambda x: jax.grad(barrier)(x, maxnorm), (theta,), (jnp.ones_like(theta),)
        )[1]
    g_sum = 2.0 * (part["A"] @ c)[:, None] * w + (part["B"] * c) @ u  # Σ_q c_q g_iq, (n, d)
    h_wa = jnp.eye(n)[:, None, :] * g_sum[:, :, None]  # (i, α, j): ∂²L/∂w_iα ∂a_j

    # ---- student pairs (mse): a_i a_j E(w_i, w_j), as coefficients on I and outer products
    zero = jnp.zeros((n, n))
    pair = {"id": zero, "ij": zero, "ii": zero, "ji": zero, "K": zero}
    relu_terms = None
    if mse:
        aa = a[:, None] * a[None, :]
        ss_relu = _relu_mask(acts_s, acts_s)
        gen = jnp.asarray(~ss_relu)
        pair = {
            "id": jnp.where(gen, aa * ss["B"], 0.0),  # on δ_αβ
            "ij": jnp.where(gen, 4.0 * aa * ss["A2"], 0.0),  # on w_iα w_jβ
            "ii": jnp.where(gen, aa * (ss["A3"] + ss["B2"].T), 0.0),  # ½· on w_iα w_iβ
            "ji": jnp.where(gen, aa * ss["B3"], 0.0),  # on w_jα w_iβ
            "K": ss["K"],
        }
        if ss_relu.any():
            # relu·relu: E = ∂²_xy κ = (1/2π)[(π − θ) I + (x̂ŷᵀ + ŷx̂ᵀ − cos θ (x̂x̂ᵀ + ŷŷᵀ))/sin θ]
            # = (1/2π)[(π − θ) I + ½ (|δ|/|σ|) σσᵀ − ½ (|σ|/|δ|) δδᵀ] with σ = x̂ + ŷ,
            # δ = x̂ − ŷ, θ = 2 atan2(|δ|, |σ|): no cancellation, exact limits at θ ∈ {0, π}.
            w_hat, w_norm = _unit(w)
            sig = w_hat[:, None, :] + w_hat[None, :, :]  # (i, j, d)
            dlt = w_hat[:, None, :] - w_hat[None, :, :]
            n_sig = jnp.sqrt(jnp.sum(sig * sig, axis=-1))
            n_dlt = jnp.sqrt(jnp.sum(dlt * dlt, axis=-1))
            live = jnp.asarray(ss_relu) & (w_norm[:, None] * w_norm[None, :] > 0.0)
            ar = jnp.where(live, aa, 0.0) / (2.0 * jnp.pi)
            relu_terms = {
                "id": ar * (jnp.pi - 2.0 * jnp.arctan2(n_dlt, n_sig)),  # on δ_αβ
                "s": 0.5 * ar * _ratio(n_dlt, n_sig),  # on σ_α σ_β
                "d": 0.5 * ar * _ratio(n_sig, n_dlt),  # on −δ_α δ_β
                "w_hat": w_hat,
            }
        # a_i g_ij = a_i (2A_ij w_i + B_ij w_j)
        h_wa = h_wa + a[:, None, None] * (
            2.0 * ss["A"][:, None, :] * w[:, :, None] + ss["B"][:, None, :] * w.T[None, :, :]
        )
    return _assemble(w, a, coef_i, rank, b_diag, h_wa, pair, relu_terms)


def _stored(x: Array) -> Array:
    """x, computed once into memory: x @ I (exact for finite x).

    XLA fuses cheap element-wise producers into their consumers, so a small (n, n) array
    broadcast over the (nd)² output would be recomputed for every output entry — and each
    recomputation may round differently (the compiler contracts a·b + c into fused
    multiply-adds depending on the surrounding code), which breaks exact symmetry.  A dot is
    never fused into an element-wise consumer on CPU; XLA's CPU pipeline removes
    ``optimization_barrier``.  The cost is O(size · last dimension): tiny for these arrays.
    """
    return x @ jnp.eye(x.shape[-1], dtype=x.dtype)


def _assemble(w, a, coef_i, rank, b_diag, h_wa, pair, relu_terms) -> Array:
    """The (P, P) matrix from its pieces: the ww block in one element-wise pass, then the
    a-columns and a-rows, then the diagonal blocks' own terms (in place).

    Every small array enters as a stored array (:func:`_stored`) and every pair quantity is
    symmetrised from its stored (i, j) and (j, i) entries, so the mirror entries (r, c) and
    (c, r) are the same operations on the same numbers: the result is exactly symmetric
    without ½(H + Hᵀ), whose transpose of P² entries would cost more than the assembly.
    """
    n, d = w.shape
    nd = n * d
    eye_d = jnp.eye(d)
    w = _stored(w)
    stored = {key: _stored(x) for key, x in pair.items()}

    def sym(x):  # ½(X + Xᵀ), from stored entries, in an order-free way
        return 0.5 * _swap_sum(x, x.T)

    def pairs(x):  # (i, j) → broadcast over (i, α, j, β)
        return x[:, None, :, None]

    w_ia, w_ib = w[:, :, None, None], w[:, None, None, :]
    w_ja, w_jb = w.T[None, :, :, None], w[None, None, :, :]
    # Q_ij w_iα w_iβ + Q_ji w_jα w_jβ = S_ij (X + Y) + A_ij (X − Y), X = w_iα w_iβ,
    # Y = w_jα w_jβ, S/A the symmetric/antisymmetric parts of Q: the mirror entry has the
    # same S, −A, X + Y and −(X − Y), hence the same rounded terms.
    q = stored["ii"]
    coef = {key: pairs(_stored(sym(stored[key]))) for key in ("id", "ij", "ji")}
    q_s, q_a = pairs(_stored(sym(q))), pairs(_stored(0.5 * (q - q.T)))
    x_ii, y_jj = w_ia * w_ib, w_ja * w_jb
    block = (
        coef["id"] * eye_d[None, :, None, :]
        + coef["ij"] * (w_ia * w_jb)
        + q_s * (x_ii + y_jj)
        + q_a * (x_ii - y_jj)
        + coef["ji"] * (w_ja * w_ib)
    )
    if relu_terms is not None:
        wh = _stored(relu_terms["w_hat"])
        wh_ia, wh_ib = wh[:, :, None, None], wh[:, None, None, :]
        wh_ja, wh_jb = wh.T[None, :, :, None], wh[None, None, :, :]
        r = {key: pairs(_stored(sym(_stored(relu_terms[key])))) for key in ("id", "s", "d")}
        block = block + (
            r["id"] * eye_d[None, :, None, :]
            + r["s"] * ((wh_ia + wh_ja) * (wh_ib + wh_jb))
            - r["d"] * ((wh_ia - wh_ja) * (wh_ib - wh_jb))
        )
    h_wa = _stored(h_wa.reshape(nd, n))  # one value for the a-columns and the a-rows
    h_aa = sym(stored["K"]) + jnp.diag(b_diag[nd:])
    # The ww block is written padded to (P, P) by its own element-wise pass, the a-columns
    # and a-rows are then updated in place (a concatenate measured slower: it copies P²).
    h = jnp.pad(block.reshape(nd, nd), ((0, n), (0, n)))
    h = jax.lax.dynamic_update_slice(h, h_wa, (0, nd))
    h = jax.lax.dynamic_update_slice(h, jnp.concatenate([h_wa.T, h_aa], axis=1), (nd, 0))
    # The diagonal blocks' own terms, added in place (n·d² entries) rather than evaluated,
    # and discarded, at every entry of the element-wise pass.
    rank = _stored(rank.reshape(nd, d)).reshape(n, d, d)
    diag = (
        a[:, None, None]
        * (coef_i[:, None, None] * eye_d + 0.5 * _swap_sum(rank, rank.transpose(0, 2, 1)))
        + b_diag[:nd].reshape(n, d)[:, :, None] * eye_d
    )
    rows = jnp.arange(n)[:, None, None] * d + jnp.arange(d)[None, :, None]
    cols = jnp.arange(n)[:, None, None] * d + jnp.arange(d)[None, None, :]
    return h.at[rows, cols].add(diag)


def autodiff_hessian(objective: Objective) -> Callable[[Array], Array]:
    """The Hessian by autodiff: ``jax.jacfwd`` of the objective's gradient, symmetrised.

    This was ``gaussian_objective``'s Hessian before :func:`structured_hessian`; it stays as
    the independent reference for ``tests/test_gaussian_hessian.py`` and ``bench/gaussian.py``.
    """
    jac = jax.jit(jax.jacfwd(objective.grad))

    def hessian(theta: Array) -> Array:
        h = jac(jnp.asarray(theta, jnp.float64))
        return 0.5 * (h + h.T)

    return hessian
