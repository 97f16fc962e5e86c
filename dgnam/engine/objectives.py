"""Objectives: what to maximise. Lucid-style algebra (``+``, ``-``, scalar ``*``) over any number of models.

An objective maps the activations of one batch to one value per row, shape (B,). Leaves name a
layer and, optionally, the :class:`~dgnam.nets.model.Model` they read; leaves without a model are bound
to the default model given to :func:`dgnam.engine.render.synthesize`. Per-row leaves (``unit(layer,
[3, 7, 9])``) give row *i* its own unit, which is how many units are optimised in one batch.

Examples::

    unit("fc8", 3)                                  # fc unit 3
    unit("features.relu4_2", 12)                    # conv channel 12 at the centre position
    unit("blocks.5.mlp.fc1", 40, token="cls")       # a ViT neuron at the CLS token
    channel("features.7", 500)                      # a Swin channel (channels-last map), spatial mean
    class_logit(5, model=vgg) + class_logit(5, model=resnet)   # two models agree
    class_logit(5, model=vgg) - class_logit(5, model=resnet)   # what vgg sees, resnet does not
    match("relu6", target_code, p=2)                # invert a representation
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from einops import rearrange, reduce

from dgnam.errors import DgnamError
from dgnam.nets.layout import Layout, by_shape, parse_layout
from dgnam.nets.model import INPUT, OUTPUT, Model, as_model

ActivationKey = tuple[Model | None, str]
# Not a layer: the parametrisation's code (Parametrization.code, None for pixels and Fourier), for
# objectives on the code itself (CodePrior); the loop puts it in the activations under (None, PARAMS).
PARAMS = "params"
Activations = Mapping[ActivationKey, torch.Tensor]


class Objective:
    """Base class: ``__call__(acts) -> (B,)`` values to maximise."""

    name: str = "objective"

    def requirements(self) -> set[ActivationKey]:
        """The (model, layer) pairs this objective reads."""
        raise NotImplementedError

    def __call__(self, acts: Activations) -> torch.Tensor:
        raise NotImplementedError

    def bind(self, model: Model) -> Objective:
        """Copy with every model-less leaf bound to ``model``."""
        raise NotImplementedError

    def take(self, rows: torch.Tensor) -> Objective:
        """Restrict per-row parameters to ``rows`` (a chunk of the batch); shared ones are unchanged."""
        return self

    @property
    def n_rows(self) -> int | None:
        """Number of rows a per-row objective describes (None if it applies to any batch)."""
        return None

    def __add__(self, other: Objective) -> Objective:
        return Sum([self, _as_objective(other)])

    def __radd__(self, other) -> Objective:
        if other == 0:  # sum([...]) starts from 0
            return self
        return _as_objective(other) + self

    def __sub__(self, other: Objective) -> Objective:
        return Sum([self, Scaled(_as_objective(other), -1.0)])

    def __neg__(self) -> Objective:
        return Scaled(self, -1.0)

    def __mul__(self, scale: float) -> Objective:
        if not isinstance(scale, (int, float)):
            raise DgnamError("objectives can only be multiplied by numbers")
        return Scaled(self, float(scale))

    __rmul__ = __mul__

    def __truediv__(self, scale: float) -> Objective:
        return self * (1.0 / scale)

    def __repr__(self) -> str:
        return self.name


def _as_objective(value) -> Objective:
    if isinstance(value, Objective):
        return value
    raise DgnamError(f"cannot combine an objective with {type(value).__name__}; use objectives and numbers")


class Sum(Objective):
    def __init__(self, terms: Sequence[Objective]) -> None:
        flat: list[Objective] = []
        for term in terms:
            flat += term.terms if isinstance(term, Sum) else [term]
        self.terms = flat
        self.name = " + ".join(t.name for t in flat).replace("+ -", "- ")
        rows = {t.n_rows for t in flat if t.n_rows is not None}
        if len(rows) > 1:
            raise DgnamError(f"per-row objectives disagree on the number of rows ({sorted(rows)}); give each the same "
                             "units")

    def requirements(self) -> set[ActivationKey]:
        return set().union(*(t.requirements() for t in self.terms))

    def __call__(self, acts: Activations) -> torch.Tensor:
        return sum(t(acts) for t in self.terms)

    def bind(self, model: Model) -> Objective:
        return Sum([t.bind(model) for t in self.terms])

    def take(self, rows: torch.Tensor) -> Objective:
        return Sum([t.take(rows) for t in self.terms])

    @property
    def n_rows(self) -> int | None:
        return next((t.n_rows for t in self.terms if t.n_rows is not None), None)


class Scaled(Objective):
    def __init__(self, inner: Objective, scale: float) -> None:
        self.inner, self.scale = inner, scale
        self.name = f"-{inner.name}" if scale == -1 else f"{scale:g}*{inner.name}"

    def requirements(self) -> set[ActivationKey]:
        return self.inner.requirements()

    def __call__(self, acts: Activations) -> torch.Tensor:
        return self.scale * self.inner(acts)

    def bind(self, model: Model) -> Objective:
        return Scaled(self.inner.bind(model), self.scale)

    def take(self, rows: torch.Tensor) -> Objective:
        return Scaled(self.inner.take(rows), self.scale)

    @property
    def n_rows(self) -> int | None:
        return self.inner.n_rows


class LayerObjective(Objective):
    """A leaf that reads one layer of one model, with optional per-row integer indices.

    The layer's :class:`~dgnam.nets.layout.Layout` says which axis holds the units: ``layout`` when given
    (``"tokens:1"``, ``"channels_last"`` ...), else the model's (declared or detected, see
    :meth:`~dgnam.nets.model.Model.layout`).
    """

    def __init__(self, layer: str, index: int | Sequence[int] | torch.Tensor, model: Model | None = None,
                 layout: str | Layout | None = None) -> None:
        self.layer = layer
        self.layout = parse_layout(layout)
        self.model = as_model(model) if model is not None else None
        index_t = torch.as_tensor(index, dtype=torch.long)
        if index_t.ndim > 1:
            raise DgnamError("unit indices must be an int or a 1-D list (one per row)")
        self.index = index_t

    @property
    def n_rows(self) -> int | None:
        return None if self.index.ndim == 0 else len(self.index)

    def requirements(self) -> set[ActivationKey]:
        return {(self.model, self.layer)}

    def _copy(self, **changes) -> LayerObjective:
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        return new

    def bind(self, model: Model) -> Objective:
        return self if self.model is not None else self._copy(model=as_model(model))

    def take(self, rows: torch.Tensor) -> Objective:
        return self if self.index.ndim == 0 else self._copy(index=self.index[rows.cpu()])

    def _activation(self, acts: Activations) -> torch.Tensor:
        return acts[(self.model, self.layer)]

    def _layout(self, act: torch.Tensor) -> Layout:
        if self.layout is not None:
            return self.layout
        if self.layer == OUTPUT and act.ndim == 2:  # logits: no trace needed (TorchScript models have no other layer)
            return by_shape(tuple(act.shape[1:]))
        if self.model is None:  # a bare activation: only (U,) and (C, H, W) are certain
            return by_shape(tuple(act.shape[1:]))
        return self.model.layout(self.layer)

    def _read(self, acts: Activations, what: str, **where) -> torch.Tensor:
        """(B,) the row's unit, from every unit's value (B, U) read as ``where`` says."""
        act = self._activation(acts)
        values = self._layout(act).read(act, layer=self.layer, **where)
        self._check_range(values.shape[1], what)
        return values.gather(1, self._rows(act.shape[0], act.device)[:, None]).squeeze(1)

    def read_all(self, act: torch.Tensor) -> torch.Tensor:
        """(B, U): every one of this objective's units (``index``, in order) on every image of a batch's
        activation ``act``, read as the objective reads its row's unit (e.g. a unit's max over real images)."""
        values = self._layout(act).read(act, layer=self.layer, **self._where(act))
        self._check_range(values.shape[1], "unit")
        return values[:, self.index.reshape(-1).to(act.device)]

    def _where(self, act: torch.Tensor) -> dict:
        raise NotImplementedError

    def _rows(self, batch: int, device: torch.device) -> torch.Tensor:
        if self.index.ndim == 0:
            return self.index.expand(batch).to(device)
        if len(self.index) != batch:
            raise DgnamError(f"objective has {len(self.index)} per-row units but the batch has {batch} rows")
        return self.index.to(device)

    def _check_range(self, size: int, what: str) -> None:
        lo, hi = int(self.index.min()), int(self.index.max())
        if lo < 0 or hi >= size:
            bad = hi if hi >= size else lo
            model = self.model.name if self.model is not None else "the model"
            raise DgnamError(f"{what} {bad} is out of range for layer {self.layer!r} of {model}, "
                             f"which has {size} {what}s (valid: 0-{size - 1})")


class Unit(LayerObjective):
    """One unit: an fc neuron, a conv or channels-last channel at one position (default: the centre), or a
    token layer's neuron at one token (``token``: an index, ``"cls"`` or ``"mean"`` over the patch tokens;
    default: the CLS token when the layer has one, else the patch mean) or patch ``position``."""

    def __init__(self, layer: str, index, model: Model | None = None,
                 position: tuple[int, int] | torch.Tensor | None = None, token: int | str | None = None,
                 layout: str | Layout | None = None) -> None:
        super().__init__(layer, index, model, layout)
        # One (row, column) for every row, or a (rows, 2) tensor, one per row: e.g. where each seed image peaks.
        per_row = isinstance(position, torch.Tensor) and position.ndim == 2
        if per_row and (position.shape[1] != 2 or self.index.ndim != 1 or len(position) != len(self.index)):
            raise DgnamError(f"per-row positions must be (rows, 2), one per unit row; got {tuple(position.shape)} "
                             f"for {self.n_rows or 1} row(s)")
        self.position = (position.long() if per_row else tuple(int(p) for p in position)) if position is not None \
            else None
        if token is not None and not (token in ("cls", "mean") or isinstance(token, int)):
            raise DgnamError(f"token must be an index, 'cls' or 'mean', got {token!r}")
        self.token = token
        self.name = (f"{layer}:{_index_name(self.index)}"
                     + ("@[per-row]" if per_row else f"@{self.position}" if self.position else "")
                     + (f"@token={token}" if token is not None else ""))

    def __call__(self, acts: Activations) -> torch.Tensor:
        kind = "unit" if self._layout(self._activation(acts)).kind in ("units", "tokens") else "channel"
        return self._read(acts, kind, **self._where(self._activation(acts)))

    def take(self, rows: torch.Tensor) -> Objective:
        taken = super().take(rows)
        per_row = isinstance(self.position, torch.Tensor)
        return taken._copy(position=self.position[rows.cpu()]) if per_row else taken

    def _where(self, act: torch.Tensor) -> dict:
        return {"position": self.position, "token": self.token}


class Channel(LayerObjective):
    """A channel's mean over all positions (Lucid's ``channel``): a conv or channels-last channel, or a token
    layer's neuron over its patch tokens."""

    def __init__(self, layer: str, index, model: Model | None = None, layout: str | Layout | None = None) -> None:
        super().__init__(layer, index, model, layout)
        self.name = f"{layer}:{_index_name(self.index)}(mean)"

    def __call__(self, acts: Activations) -> torch.Tensor:
        return self._read(acts, "channel", **self._where(self._activation(acts)))

    def _where(self, act: torch.Tensor) -> dict:
        if self._layout(act).kind == "units":
            raise DgnamError(f"channel() needs a spatial or token layer; {self.layer!r} has shape "
                             f"{tuple(act.shape[1:])}, use unit() instead")
        return {"mean": True}


class Match(Objective):
    """Minus the Lp distance between a layer's activation and a target (maximising it matches the target).

    ``target`` is one activation (broadcast to every row) or one per row (shape (B, ...)).
    """

    def __init__(self, layer: str, target: torch.Tensor, p: float = 2.0, model: Model | None = None,
                 normalize: bool = False) -> None:
        self.layer, self.p, self.normalize = layer, float(p), normalize
        self.model = as_model(model) if model is not None else None
        self.target = target.detach()
        self.per_row = False
        self.name = f"match({layer}, p={p:g})"

    def per_row_targets(self) -> Match:
        """Treat the target's first dimension as one target per row."""
        new = Match(self.layer, self.target, self.p, self.model, self.normalize)
        new.per_row = True
        return new

    @property
    def n_rows(self) -> int | None:
        return len(self.target) if self.per_row else None

    def requirements(self) -> set[ActivationKey]:
        return {(self.model, self.layer)}

    def bind(self, model: Model) -> Objective:
        if self.model is not None:
            return self
        new = Match(self.layer, self.target, self.p, model, self.normalize)
        new.per_row = self.per_row
        return new

    def take(self, rows: torch.Tensor) -> Objective:
        if not self.per_row:
            return self
        new = Match(self.layer, self.target[rows.cpu()], self.p, self.model, self.normalize)
        new.per_row = True
        return new

    def __call__(self, acts: Activations) -> torch.Tensor:
        act = rearrange(acts[(self.model, self.layer)], "b ... -> b (...)")
        target = self.target.to(act.device, act.dtype)
        target = rearrange(target, "b ... -> b (...)") if self.per_row else target.reshape(1, -1)
        if target.shape[1] != act.shape[1]:
            raise DgnamError(f"match target has {target.shape[1]} values but layer {self.layer!r} has {act.shape[1]}")
        distance = torch.linalg.vector_norm(act - target, ord=self.p, dim=1)
        if self.normalize:
            distance = distance / torch.linalg.vector_norm(target, ord=self.p, dim=1).clamp_min(1e-12)
        return -distance


class RowScaled(Objective):
    """Row *i* of ``inner`` times ``scales[i]``: different mixes of the same terms in one batch
    (A+B on some rows, A-B on others; a layer's match switched on only for its own rows)."""

    def __init__(self, inner: Objective, scales: Sequence[float] | torch.Tensor) -> None:
        scales_t = torch.as_tensor(scales, dtype=torch.float32)
        if scales_t.ndim != 1:
            raise DgnamError("row scales must be a 1-D list, one number per row")
        self.inner, self.scales = inner, scales_t
        self.name = f"rows*{inner.name}"
        if inner.n_rows is not None and inner.n_rows != len(scales_t):
            raise DgnamError(f"{len(scales_t)} row scales for an objective with {inner.n_rows} rows; give one per row")

    def requirements(self) -> set[ActivationKey]:
        return self.inner.requirements()

    def __call__(self, acts: Activations) -> torch.Tensor:
        values = self.inner(acts)
        if len(values) != len(self.scales):
            raise DgnamError(f"objective has {len(self.scales)} row scales but the batch has {len(values)} rows")
        return values * self.scales.to(values.device, values.dtype)

    def bind(self, model: Model) -> Objective:
        return RowScaled(self.inner.bind(model), self.scales)

    def take(self, rows: torch.Tensor) -> Objective:
        return RowScaled(self.inner.take(rows), self.scales[rows.cpu()])

    @property
    def n_rows(self) -> int | None:
        return len(self.scales)


class Capped(Objective):
    """``min(inner, level)`` per row: an activation target. Once a row's value reaches its level the
    objective gives it no more gradient, so the rest of the steps only pull the code towards natural
    codes (the code prior, the decay) instead of pushing the unit ever further past real activations.
    DGN-AM's normalised ascent stops a row whose gradient vanishes; Adam's momentum carries it past the level
    for a few steps."""

    def __init__(self, inner: Objective, levels: float | Sequence[float] | torch.Tensor) -> None:
        levels_t = torch.as_tensor(levels, dtype=torch.float32)
        if levels_t.ndim > 1:
            raise DgnamError("an activation target is one number, or one per row")
        if not torch.isfinite(levels_t).all():
            raise DgnamError("an activation target must be finite; give a number, e.g. 1.5x the unit's real max")
        if levels_t.ndim == 1 and inner.n_rows is not None and inner.n_rows != len(levels_t):
            raise DgnamError(f"{len(levels_t)} activation targets for an objective with {inner.n_rows} rows; "
                             f"give one per row")
        self.inner, self.levels = inner, levels_t
        self.name = f"min({inner.name}, {float(levels_t):g})" if levels_t.ndim == 0 else f"min({inner.name}, target)"

    def requirements(self) -> set[ActivationKey]:
        return self.inner.requirements()

    def __call__(self, acts: Activations) -> torch.Tensor:
        values = self.inner(acts)
        if self.levels.ndim == 1 and len(values) != len(self.levels):
            raise DgnamError(f"objective has {len(self.levels)} activation targets but the batch has {len(values)} "
                             "rows")
        return torch.minimum(values, self.levels.to(values.device, values.dtype))

    def bind(self, model: Model) -> Objective:
        return Capped(self.inner.bind(model), self.levels)

    def take(self, rows: torch.Tensor) -> Objective:
        return Capped(self.inner.take(rows), self.levels if self.levels.ndim == 0 else self.levels[rows.cpu()])

    @property
    def n_rows(self) -> int | None:
        return len(self.levels) if self.levels.ndim == 1 else self.inner.n_rows


class TotalVariation(Objective):
    """Total variation of the image itself (use with a negative weight as a smoothness penalty)."""

    name = "tv"

    def requirements(self) -> set[ActivationKey]:
        return {(None, INPUT)}

    def bind(self, model: Model) -> Objective:
        return self

    def __call__(self, acts: Activations) -> torch.Tensor:
        image = acts[(None, INPUT)]
        dy = (image[..., 1:, :] - image[..., :-1, :]).abs()
        dx = (image[..., :, 1:] - image[..., :, :-1]).abs()
        return reduce(dy, "b c h w -> b", "mean") + reduce(dx, "b c h w -> b", "mean")


class CodePrior(Objective):
    """PPGN's prior on a DGN-AM code (Nguyen et al. 2017, eq. 11's epsilon_1 term): ``-1/2 |h - E(G(h))|^2``
    with ``E(G(h))`` held fixed, so its gradient is ``E(G(h)) - h``: a step towards the code the encoder
    reads back from the image, as a denoising autoencoder's reconstruction points towards real data.

    ``model`` must be the encoder whose ``layer`` the generator inverts (the generator's
    ``encoder`` / ``encoder_layer``); only a code parametrisation (:class:`~dgnam.engine.param.GeneratorCode`)
    has a code to compare.
    """

    def __init__(self, layer: str, model: Model | None = None) -> None:
        self.layer = layer
        self.model = as_model(model) if model is not None else None
        self.name = f"code_prior({layer})"

    def requirements(self) -> set[ActivationKey]:
        return {(self.model, self.layer), (None, PARAMS)}

    def bind(self, model: Model) -> Objective:
        return self if self.model is not None else CodePrior(self.layer, model)

    def __call__(self, acts: Activations) -> torch.Tensor:
        code = acts.get((None, PARAMS))
        if code is None:
            raise DgnamError("code_prior needs a code parametrisation (GeneratorCode); pixels and Fourier have no code")
        read_back = rearrange(acts[(self.model, self.layer)], "b ... -> b (...)").detach()
        if read_back.shape != code.shape:
            raise DgnamError(f"code_prior: layer {self.layer!r} has {read_back.shape[1]} values but the code has "
                             f"{code.shape[1]}; pass the encoder and layer the generator inverts")
        return -0.5 * (code - read_back.to(code.dtype)).pow(2).sum(1)


def _index_name(index: torch.Tensor) -> str:
    return str(int(index)) if index.ndim == 0 else "[per-row]"


def unit(layer: str, index: int | Sequence[int], model: Model | None = None,
         position: tuple[int, int] | None = None, token: int | str | None = None,
         layout: str | Layout | None = None) -> Unit:
    """An fc unit, a conv (or channels-last) channel at ``position`` (default: the centre, as in the paper),
    or a token layer's neuron at ``token`` (index, ``"cls"``, ``"mean"``; default CLS) or patch ``position``.

    A list of indices gives row *i* of the batch unit ``index[i]``. ``layout`` overrides the layer's
    detected layout (see :mod:`dgnam.nets.layout`).
    Example: ``unit("layer4", 7)``; ``unit("fc", range(10))``; ``unit("blocks.5.mlp.fc1", 3, token="cls")``.
    """
    return Unit(layer, list(index) if isinstance(index, range) else index, model, position, token, layout)


def channel(layer: str, index: int | Sequence[int], model: Model | None = None,
            layout: str | Layout | None = None) -> Channel:
    """A channel's mean over all positions (a token layer: over its patch tokens).
    Example: ``channel("layer3", 12)``."""
    return Channel(layer, list(index) if isinstance(index, range) else index, model, layout)


def class_logit(index: int | Sequence[int], model: Model | None = None) -> Unit:
    """A class logit, i.e. the model's (pre-softmax) output unit. Example: ``class_logit(3, model=m)``."""
    return Unit(OUTPUT, list(index) if isinstance(index, range) else index, model)


def match(layer: str, target: torch.Tensor, p: float = 2.0, model: Model | None = None,
          normalize: bool = False) -> Match:
    """Minimise the Lp distance of ``layer``'s activation to ``target`` (inversion, mimicry).

    Example: ``match("relu6", encoder.run(x, ["relu6"])["relu6"][0])``.
    """
    return Match(layer, target, p, model, normalize)


def total_variation() -> TotalVariation:
    """Image total variation; ``objective - 0.1 * total_variation()`` penalises high frequencies."""
    return TotalVariation()


def code_prior(layer: str, model: Model | None = None) -> CodePrior:
    """PPGN's code prior: add ``eps * code_prior(G.encoder_layer, model=encoder)`` to a DGN-AM objective
    to pull the code towards what the encoder reads from its image (see :class:`CodePrior`).

    Example: ``class_logit(3, model=net) + 0.1 * code_prior("features.relu4_2", model=encoder)``.
    """
    return CodePrior(layer, model)


def scale_rows(objective: Objective, scales: Sequence[float] | torch.Tensor) -> RowScaled:
    """Weight row *i* of ``objective`` by ``scales[i]``, so one batch can mix objectives.

    Example: ``scale_rows(class_logit(c, model=a), [1, 1, -1]) + scale_rows(class_logit(c, model=b), [1, -1, 1])``
    gives A+B, A-B and B-A in three rows.
    """
    return RowScaled(objective, scales)


def capped(objective: Objective, levels: float | Sequence[float] | torch.Tensor) -> Capped:
    """An activation target: maximise ``objective`` up to ``levels`` (one number, or one per row), no further.

    Example: ``capped(class_logit(range(10), model=net), 1.5 * real_max) + 0.5 * code_prior(...)``: each class
    logit is pushed to 1.5x its max over real images, then the code prior keeps the image natural.
    """
    return Capped(objective, levels)
