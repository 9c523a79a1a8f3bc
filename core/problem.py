"""From a validated :class:`~core.config.Config` to the objects a run needs.

``build_problem(config)`` builds, reproducibly from ``config.seed``:

* the teacher (:mod:`core.teachers`) — random weights from key k_T;
* the student spec (teacher's input/output dims, student widths/activation/bias);
* the data: N inputs of ``data.kind`` seeded by ``config.data_seed`` labelled by the
  teacher (:mod:`core.data`; for ``crossentropy`` the one-hot class c_n = argmax of the
  teacher's outputs, :func:`core.crossentropy.label_dataset`), none for
  ``gaussian-infinite``, or a data file's x and y (``file``, :mod:`core.datafile`; without
  y the teacher labels x; with y there may be no teacher, kind "none");
* the objective: finite-data MSE (:func:`core.objectives.mse_objective`), cross-entropy of
  softmax outputs (:func:`core.crossentropy.crossentropy_objective`), the finite-data
  correlation loss (:func:`core.correlation.correlation_objective`) or the exact
  Gaussian expectation (:func:`core.gaussian.gaussian_objective`; for deep linear students
  :func:`core.linear_gaussian.linear_gaussian_objective`);
* θ₀ (P,): the explicit ``student.params`` or ``init_params(spec, k_S, init_scale)``,

where k_T = split(PRNGKey(teacher.seed or seed))[0] and k_S = split(PRNGKey(student.seed
or seed))[1] (one ``seed`` gives both, as before the two optional seeds existed).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np

from core.config import Config, ConfigError, params_dict
from core.data import make_dataset
from core.networks import NetworkSpec, flatten, init_params
from core.objectives import Dataset, Objective, mse_objective
from core.teachers import (
    Teacher,
    glu_teacher,
    load_teacher_npz,
    network_teacher,
    no_teacher,
    orthonormal_teacher,
    random_teacher,
    rosenbrock_teacher,
)


@dataclass(frozen=True)
class Problem:
    """Everything a run needs.

    Attributes:
        config: the validated config it was built from.
        teacher: the target.
        spec: the student network spec.
        objective: L(θ) with derivatives, θ of shape (spec.n_params,).
        theta0: initial student parameters, shape (P,), NumPy float64.
        data: the finite data set (x (N, d), y (N, k)), or ``None`` for infinite data.
    """

    config: Config
    teacher: Teacher
    spec: NetworkSpec
    objective: Objective
    theta0: np.ndarray
    data: Dataset | None = None

    @property
    def constraint(self):
        """The :class:`core.manifold.Constraint` of the student (unit_norm / train_output),
        or None."""
        from core.manifold import constraint_of

        return constraint_of(self.objective)

    def objective_for(self, spec: NetworkSpec) -> Objective:
        """The same loss (same data, teacher, maxnorm) for another student spec.

        Used after surgery (merge/split changes the width mid-session).
        """
        if spec == self.spec:
            return self.objective
        return make_objective(self.config, spec, self.teacher, self.data)

    def fit_metrics(self, spec: NetworkSpec, theta: np.ndarray) -> dict:
        """Errors reported beside the loss at θ (P,) of ``spec``.

        * mse, finite data: ``rmse`` = √(Σ_n w_n ‖f(x_n) − y_n‖² / K), the root of the mean
          squared error per output (w_n = 1/N: √(mean over samples and outputs of r²));
        * mse, infinite data: ``rmse`` = √(2 (L − B) / K) from L = ½ E‖f − g‖² + B;
        * crossentropy: ``accuracy`` = Σ_n w_n [argmax_o f_o(x_n) = c_n] (training accuracy);
        * correlation: ``rmse`` is None (the loss compares no outputs).
        """
        from core.networks import forward_jit

        theta_j = jax.numpy.asarray(theta, jax.numpy.float64)
        loss, k = self.config.data.loss, spec.output_dim
        if loss == "correlation":
            return {"rmse": None}
        if self.data is None:
            from core.objectives import barrier

            value = self.objective_for(spec).loss(theta_j)
            data_term = float(value - barrier(theta_j, self.config.dynamics.maxnorm))
            return {"rmse": float(np.sqrt(max(2.0 * data_term, 0.0) / k))}
        out = forward_jit(spec, theta_j, jax.numpy.asarray(self.data.x))
        y = jax.numpy.asarray(self.data.y)
        n = y.shape[0]
        w = np.full(n, 1.0 / n) if self.data.weights is None else np.asarray(self.data.weights)
        if loss == "crossentropy":
            from core.crossentropy import accuracy

            return {"accuracy": accuracy(out, y, self.data.weights)}
        sq = np.sum(np.asarray(out - y) ** 2, axis=1)
        return {"rmse": float(np.sqrt(np.sum(w * sq) / k))}


@jax.jit
def _split_seed(seed: jax.Array) -> jax.Array:
    return jax.random.split(jax.random.PRNGKey(seed))


def _keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """(k_teacher, k_student) from the config's seed (one compiled program: start-up time)."""
    k_teacher, k_student = _split_seed(seed)
    return k_teacher, k_student


def build_teacher(config: Config) -> Teacher:
    """The teacher of ``config`` (raises :class:`ConfigError` naming ``teacher.*``)."""
    t = config.teacher
    if t.kind == "none":  # a data file's own targets
        return no_teacher(t.input_dim, t.output_dim)
    k_teacher, _ = _keys(config.seed if t.seed is None else t.seed)
    try:
        if t.kind == "random":
            return random_teacher(t.spec(), k_teacher)
        if t.kind == "orthonormal":
            return orthonormal_teacher(t.input_dim, t.widths[0], t.activation, k_teacher)
        if t.kind == "glu":
            return glu_teacher(t.u, t.v, t.activation)
        if t.kind == "rosenbrock":
            return rosenbrock_teacher(t.input_dim)
        if t.kind == "explicit":
            spec = t.spec()
            return network_teacher(spec, flatten(spec, params_dict(t.params)), "explicit")
    except ValueError as e:
        raise ConfigError(config.source, "teacher", str(e)) from None
    if t.kind == "file":
        try:
            return load_teacher_npz(t.path, t.spec())
        except (OSError, ValueError, KeyError) as e:
            raise ConfigError(config.source, "teacher.path", f"{t.path}: {e}") from None
    raise ConfigError(config.source, "teacher.kind", f"unknown kind {t.kind!r}")


def make_data(config: Config, teacher: Teacher) -> Dataset | None:
    """The finite data set, or ``None`` for ``gaussian-infinite``."""
    d = config.data
    if d.kind == "gaussian-infinite":
        return None
    if d.kind == "file":
        return _file_dataset(config, teacher)
    data = make_dataset(teacher, d.kind, d.samples, config.data_seed)
    if d.loss == "crossentropy":
        from core.crossentropy import label_dataset

        return label_dataset(data)
    return data


def _file_dataset(config: Config, teacher: Teacher) -> Dataset:
    """``data.path``'s x with its y (class labels made one-hot for cross-entropy) or the
    teacher's labels, and its sample weights w (normalised to sum 1) if it has them; the
    file must still be the one the config recorded (sha256)."""
    from core.datafile import read_data_file
    from core.files import FileReadError

    d = config.data
    try:
        file = read_data_file(d.path)
    except FileReadError as e:
        raise ConfigError(config.source, "data.path", f"{d.path}: {e}") from None
    if file.sha256 != d.sha256:
        raise ConfigError(
            config.source,
            "data.path",
            f"{d.path} has changed since the config was read (sha256 {file.sha256[:12]}… ≠ "
            f"{str(d.sha256)[:12]}…)",
        )
    x = jax.numpy.asarray(file.x)
    w = None if file.w is None else jax.numpy.asarray(file.w)
    if file.y is None:
        data = Dataset(x, teacher(x), w)
        if d.loss == "crossentropy":
            from core.crossentropy import label_dataset

            return label_dataset(data)
        return data
    k = teacher.output_dim
    if d.loss == "crossentropy" and file.y.ndim == 1:
        from core.crossentropy import one_hot

        return Dataset(x, one_hot(file.labels(k), k), w)
    return Dataset(x, jax.numpy.asarray(file.y).reshape(file.n_samples, k), w)


def make_objective(
    config: Config, spec: NetworkSpec, teacher: Teacher, data: Dataset | None
) -> Objective:
    """The loss of ``config`` for a student ``spec``: constrained to the manifold of
    ``student.unit_norm`` / ``student.train_output`` when set
    (:func:`core.manifold.constrained_objective`)."""
    from core.manifold import constrained_objective

    objective = _unconstrained_objective(config, spec, teacher, data)
    constraint = student_constraint(config, spec)
    return objective if constraint is None else constrained_objective(objective, constraint)


def student_constraint(config: Config, spec: NetworkSpec):
    """The :class:`core.manifold.Constraint` of ``config.student`` for ``spec``, or None."""
    from core.manifold import make_constraint

    s = config.student
    try:
        return make_constraint(spec, s.unit_norm, s.train_output)
    except ValueError as e:
        raise ConfigError(config.source, "student.unit_norm", str(e)) from None


def _unconstrained_objective(
    config: Config, spec: NetworkSpec, teacher: Teacher, data: Dataset | None
) -> Objective:
    """The loss of ``config`` for a student ``spec`` (no constraint)."""
    maxnorm = config.dynamics.maxnorm
    if data is not None and config.data.loss == "crossentropy":
        from core.crossentropy import crossentropy_objective

        return crossentropy_objective(spec, data, maxnorm=maxnorm)
    if data is not None and config.data.loss == "correlation":
        from core.correlation import correlation_objective

        return correlation_objective(spec, data, maxnorm=maxnorm)
    if data is not None:
        return mse_objective(spec, data, maxnorm=maxnorm)
    from core.gaussian import gaussian_objective
    from core.linear_gaussian import is_linear, linear_gaussian_objective

    try:
        if is_linear(spec) and not _two_layer_pair(spec, teacher):
            return linear_gaussian_objective(spec, teacher, maxnorm=maxnorm)
        return gaussian_objective(spec, teacher, loss=config.data.loss, maxnorm=maxnorm)
    except (ValueError, NotImplementedError) as e:
        raise ConfigError(config.source, "data.kind", f"'gaussian-infinite': {e}") from None


def _two_layer_pair(spec: NetworkSpec, teacher: Teacher) -> bool:
    """Whether student and teacher are both bias-free, one-hidden-layer, scalar-output nets:
    :func:`core.gaussian.gaussian_objective`'s pair kernels cover them (any activations);
    other linear students go to :func:`core.linear_gaussian.linear_gaussian_objective`."""

    def two_layer(s: NetworkSpec | None) -> bool:
        return s is not None and len(s.widths) == 1 and not any(s.bias) and s.output_dim == 1

    return two_layer(spec) and two_layer(teacher.spec)


def initial_theta(config: Config, spec: NetworkSpec) -> np.ndarray:
    """θ₀ (P,): explicit ``student.params`` or LeCun-normal × ``init_scale`` from k_S
    (for cross-entropy moved onto the centred slice, :func:`core.crossentropy.centre_logits`:
    the same probabilities, and the loss along the run is the bare cross-entropy); with
    ``student.unit_norm`` each w_i normalised, with ``train_output = false`` the output
    layer's weights from ``params``, else all ones (its bias, if any, 0)."""
    theta = _initial_theta(config, spec)
    constraint = student_constraint(config, spec)
    if constraint is None:
        return theta
    # On the manifold: w_i normalised; fixed output weights = params, else ones (bias 0).
    from core.manifold import retract

    theta = retract(constraint, theta)
    if config.student.params is None and constraint.fixed.size:
        last = spec.n_layers
        theta[spec.offsets()[f"w{last}"]] = 1.0
        if spec.bias[last - 1]:
            theta[spec.offsets()[f"b{last}"]] = 0.0
    return theta


def _initial_theta(config: Config, spec: NetworkSpec) -> np.ndarray:
    s = config.student
    if s.params is not None:
        try:
            return np.asarray(flatten(spec, params_dict(s.params)), dtype=np.float64)
        except ValueError as e:
            raise ConfigError(config.source, "student.params", str(e)) from None
    _, k_student = _keys(config.seed if s.seed is None else s.seed)
    theta = np.asarray(init_params(spec, k_student, s.init_scale), dtype=np.float64)
    if config.data.loss == "crossentropy":
        from core.crossentropy import centre_logits

        return centre_logits(spec, theta)
    return theta


def build_problem(config: Config) -> Problem:
    """Teacher, data, objective and θ₀ for ``config`` (see the module docstring)."""
    teacher = build_teacher(config)
    try:
        spec = config.student_spec()
    except ValueError as e:
        raise ConfigError(config.source, "student", str(e)) from None
    if teacher.output_dim != spec.output_dim or teacher.input_dim != spec.input_dim:
        raise ConfigError(
            config.source,
            "teacher",
            f"teacher maps ℝ^{teacher.input_dim} → ℝ^{teacher.output_dim}, "
            f"student ℝ^{spec.input_dim} → ℝ^{spec.output_dim}",
        )
    data = make_data(config, teacher)
    objective = make_objective(config, spec, teacher, data)
    theta0 = initial_theta(config, spec)
    return Problem(config, teacher, spec, objective, theta0, data)
