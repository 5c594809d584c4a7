"""Universal physical textures: the adversarial patch (Brown et al. 2017) and the universal masked
texture (eyeglass frames, stickers; Sharif et al. 2016), trained over a data set.

Brown, Mané, Roy, Abadi & Gilmer (2017, "Adversarial patch", eq. 2) train one patch ``p`` for a
whole distribution of images, places and transformations::

    p̂ = argmax_p  E_{x∼X, t∼T, l∼L} [ log Pr(ŷ | A(p, x, l, t)) ]

where ``A`` pastes the patch, transformed by ``t`` (scale, rotation), at location ``l`` of image
``x``. Here ``A`` is a bilinear warp of the texture and of its shape into the image (the patch always
lies wholly inside it), followed by a scene transformation from :mod:`advrobust.transforms` (lighting,
pose, print-and-photograph) — the expectation over transformations of Athalye et al. (2018). The
objective is the package's per-point objective (targeted: ``−CE(z, t)``, i.e. ``log Pr(t | ·)``;
untargeted: ``CE(z, y)``), minus ``nps_weight · NPS`` and ``tv_weight · TV`` (Sharif et al. 2016,
eqs. 4–5; :mod:`advrobust.printability`), maximized by Adam with the texture projected onto
``[0, 1]`` after every step. Each step draws a fresh batch of images, places and transformations
from the ``generator``: a seed gives the same patch every time.

A masked texture is the same optimization with a fixed placement: ``A(p, x) = (1 − M) ⊙ x + M ⊙ p``
for a binary support ``M`` (one for every image, or one per image: a frame per face).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from advrobust.attacks.eval_mode import evaluation_mode
from advrobust.attacks.inputs import check_positive_int
from advrobust.errors import InputError
from advrobust.losses import get_loss
from advrobust.masks import check_mask
from advrobust.printability import check_palette, default_palette, nps, total_variation
from advrobust.runtime import RuntimePolicy
from advrobust.tasks import CLASSIFICATION, Task, resolve_task
from advrobust.transforms import Transform, physical
from advrobust.transforms.base import check_images, check_range
from advrobust.transforms.geometric import warp

Callback = Callable[[int, dict[str, float]], None]


# ------------------------------------------------------------------------------- placements
class Placement(ABC):
    """Where a texture goes in each image: ``sample`` draws a placement per image, ``paste`` applies it."""

    @abstractmethod
    def texture_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """The texture's ``(C, h, w)`` for images of shape ``(C, H, W)``."""

    @abstractmethod
    def sample(self, x: Tensor, index: Tensor, generator: torch.Generator | None) -> dict[str, Tensor]:
        """One placement per image of ``x`` (rows ``index`` of the data set)."""

    @abstractmethod
    def paste(self, x: Tensor, texture: Tensor, params: dict[str, Tensor]) -> Tensor:
        """``x`` with the texture placed as ``params`` say; differentiable in the texture."""

    @abstractmethod
    def paste_and_cover(self, x: Tensor, texture: Tensor, params: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """:meth:`paste`, and the pixels of ``x`` the placed texture covers (more than half; ``N×H×W``
        bool), from the same placement: what a dense task's labels lose under the texture."""

    def support(self, texture: Tensor) -> Tensor | None:
        """The texture's own support (``h×w``) for NPS and TV; ``None``: all of it."""
        return None


@dataclass(frozen=True)
class RandomPlacement(Placement):
    """A square or round patch covering ``area`` of the image at scale 1, drawn at a side scale in
    ``[scale_min, 1]``, rotated by up to ``rotation`` degrees and put at a uniform location such that
    it lies wholly inside ``region`` (Brown et al. 2017, §2: random location, scale and rotation).

    ``region = (x0, y0, x1, y1)`` in fractions of the image's width and height (default: all of it);
    e.g. ``(0.15, 0.15, 0.85, 0.85)`` keeps an MNIST patch on the digit rather than the empty border.
    A pasted patch is resampled on the square :meth:`window` of pixels it can reach, not on the
    whole image (the same values; a 10% patch on 28×28 digits: 16×16 pixels instead of 28×28).
    """

    area: float = 0.1
    scale_min: float = 0.8
    rotation: float = 20.0
    shape: str = "square"
    region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        check_range("RandomPlacement", "area", self.area, 1.0)
        if self.area <= 0:
            raise InputError(f"RandomPlacement: area must be a fraction of the image in (0, 1], got {self.area!r}")
        if not 0 < self.scale_min <= 1:
            raise InputError(f"RandomPlacement: scale_min must be in (0, 1], got {self.scale_min!r}")
        check_range("RandomPlacement", "rotation", self.rotation, 180.0)
        if self.shape not in ("square", "circle"):
            raise InputError(f"RandomPlacement: shape must be 'square' or 'circle', got {self.shape!r}")
        try:
            x0, y0, x1, y1 = (float(v) for v in self.region)
        except (TypeError, ValueError):
            raise InputError(f"RandomPlacement: region is (x0, y0, x1, y1) in fractions, got {self.region!r}") from None
        if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
            raise InputError(f"RandomPlacement: region needs 0 <= x0 < x1 <= 1, 0 <= y0 < y1 <= 1; got {self.region!r}")
        object.__setattr__(self, "region", (x0, y0, x1, y1))

    def side(self, h: int, w: int) -> float:
        """The patch's side in image pixels at scale 1 (a circle's diameter of the same area)."""
        ratio = 1.0 if self.shape == "square" else 4 / math.pi
        return math.sqrt(self.area * h * w * ratio)

    def texture_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        c, h, w = image_shape
        side = max(2, math.ceil(self.side(h, w)))
        return c, side, side

    def _reach(self, angle: Tensor) -> Tensor:
        """Half the width of the rotated patch's bounding box, per unit of side."""
        if self.shape == "circle":
            return torch.full_like(angle, 0.5)
        return 0.5 * (angle.cos().abs() + angle.sin().abs())

    def _widest_reach(self, h: int, w: int) -> float:
        """The most any placement's pixels reach from its centre (at scale 1 and the widest angle)."""
        reach = float(self._reach(torch.tensor(math.radians(min(self.rotation, 45.0)), dtype=torch.float64)))
        return (reach + 1 / self.texture_shape((1, h, w))[1]) * self.side(h, w)

    def sample(self, x: Tensor, index: Tensor, generator: torch.Generator | None) -> dict[str, Tensor]:
        n, (h, w) = x.shape[0], x.shape[-2:]
        u = torch.rand(n, 4, generator=generator, dtype=x.dtype, device=x.device)
        angle = (2 * u[:, 0] - 1) * math.radians(self.rotation)
        side = self.side(h, w) * (self.scale_min + (1 - self.scale_min) * u[:, 1])
        # half the rotated bounding box, plus one texel: bilinear sampling spreads the edge that far
        reach = self._reach(angle) * side + side / self.texture_shape((1, h, w))[1]
        x0, y0, x1, y1 = self.region
        rw, rh = (x1 - x0) * w, (y1 - y0) * h
        if 2 * self._widest_reach(h, w) > min(rw, rh) + 1e-6:
            raise InputError(
                f"a patch of area {self.area:g} rotated by up to {self.rotation:g}° does not fit in a "
                f"{rw:g}×{rh:g}-pixel region: lower area or rotation, or widen the region"
            )
        # the centre, in pixels from the image centre, uniform where the whole patch stays in the region
        cx = (x0 + x1 - 1) * w / 2 + (2 * u[:, 2] - 1) * (rw / 2 - reach)
        cy = (y0 + y1 - 1) * h / 2 + (2 * u[:, 3] - 1) * (rh / 2 - reach)
        return {"angle": angle, "side": side, "centre": torch.stack([cx, cy], dim=1)}

    def centred(self, x: Tensor) -> dict[str, Tensor]:
        """The digital placement: at the image centre, scale 1, no rotation."""
        n, (h, w) = x.shape[0], x.shape[-2:]
        zeros = torch.zeros(n, dtype=x.dtype, device=x.device)
        return {"angle": zeros, "side": torch.full_like(zeros, self.side(h, w)),
                "centre": torch.zeros(n, 2, dtype=x.dtype, device=x.device)}

    def matrix(self, params: dict[str, Tensor], h: int, w: int) -> Tensor:
        """``N×3×3``: image normalized coordinates → the patch's normalized coordinates, i.e.
        ``(2/side)·R(−θ)·(diag(w/2, h/2)·u − centre)``."""
        angle, side, centre = params["angle"], params["side"], params["centre"]
        k = 2 / side
        cos, sin = k * angle.cos(), k * angle.sin()
        cx, cy = centre[:, 0], centre[:, 1]
        zero, one = torch.zeros_like(cos), torch.ones_like(cos)
        rows = [cos * (w / 2), sin * (h / 2), -(cos * cx + sin * cy),
                -sin * (w / 2), cos * (h / 2), sin * cx - cos * cy,
                zero, zero, one]
        return torch.stack(rows, dim=1).reshape(-1, 3, 3)

    def shape_mask(self, texture: Tensor) -> Tensor:
        """``1×h×w`` 0/1: the patch's shape on its own texture grid."""
        h, w = texture.shape[-2:]
        if self.shape == "square":
            return torch.ones(1, h, w, dtype=texture.dtype, device=texture.device)
        ys = (torch.arange(h, dtype=texture.dtype, device=texture.device) + 0.5) / h * 2 - 1
        xs = (torch.arange(w, dtype=texture.dtype, device=texture.device) + 0.5) / w * 2 - 1
        return ((ys[:, None].square() + xs[None].square()) <= 1).to(texture.dtype)[None]

    def support(self, texture: Tensor) -> Tensor | None:
        return None if self.shape == "square" else self.shape_mask(texture)[0]

    def window(self, params: dict[str, Tensor], h: int, w: int) -> tuple[Tensor, Tensor]:
        """The square of ``S×S`` image pixels around each placed patch that holds every pixel it
        can touch (``S`` from the widest reach, at most the image): ``N×S×S`` flat pixel indices
        into ``H·W`` and the ``N×3×3`` map from the window's normalized coordinates to the patch's.
        Sampling the patch on its window alone gives the same values as on the whole image (zero
        elsewhere) from ~(S/H)² of the work."""
        centre = params["centre"]
        side = 2 * math.ceil(self._widest_reach(h, w)) + 2
        sh, sw = min(h, side), min(w, side)
        size = centre.new_tensor([w, h])
        span = centre.new_tensor([sw, sh])
        origin = torch.minimum(torch.floor(centre + (size - span) / 2).clamp_min(0), size - span)  # top-left
        rows = origin[:, 1, None].long() + torch.arange(sh, device=centre.device)
        cols = origin[:, 0, None].long() + torch.arange(sw, device=centre.device)
        # the window is an image of its own whose centre lies (origin + span/2 − size/2) from the image's
        shifted = {**params, "centre": centre - (origin + (span - size) / 2)}
        return rows[:, :, None] * w + cols[:, None, :], self.matrix(shifted, sh, sw)

    def _window_alpha_and_pixels(self, texture: Tensor, params: dict[str, Tensor], h: int,
                                 w: int) -> tuple[Tensor, Tensor, Tensor]:
        """The window's flat indices (``N×S×S``), coverage ``α`` (``N×1×S×S``) and colours ``α ⊙ p``."""
        flat, m = self.window(params, h, w)
        shape = self.shape_mask(texture)
        rgba = torch.cat([texture * shape, shape], dim=0)
        out = warp(rgba.expand(flat.shape[0], *rgba.shape), m, "zeros", size=tuple(flat.shape[1:]))
        return flat, out[:, -1:], out[:, :-1]

    def alpha_and_pixels(self, x: Tensor, texture: Tensor, params: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """The pasted patch's coverage ``α`` (``N×1×H×W`` in ``[0, 1]``) and its colours ``α ⊙ p``."""
        n, c, h, w = x.shape
        flat, alpha, colour = self._window_alpha_and_pixels(texture, params, h, w)
        index = flat.flatten(1)[:, None]
        full_alpha = x.new_zeros(n, 1, h * w).scatter(2, index, alpha.flatten(2))
        full_colour = x.new_zeros(n, c, h * w).scatter(2, index.expand(n, c, -1), colour.flatten(2))
        return full_alpha.reshape(n, 1, h, w), full_colour.reshape(n, c, h, w)

    def paste(self, x: Tensor, texture: Tensor, params: dict[str, Tensor]) -> Tensor:
        """``(1 − α) ⊙ x + α ⊙ p`` computed on each patch's window only, the rest of ``x`` copied."""
        return self._paste_on_windows(x, texture, params)[0]

    def paste_and_cover(self, x: Tensor, texture: Tensor, params: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        pasted, flat, alpha = self._paste_on_windows(x, texture, params)
        n, _, h, w = x.shape
        covered = torch.zeros(n, h * w, dtype=torch.bool, device=x.device)
        return pasted, covered.scatter(1, flat.flatten(1), alpha.detach().flatten(1) > 0.5).reshape(n, h, w)

    def _paste_on_windows(self, x: Tensor, texture: Tensor, params: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """The pasted images, and each window's flat indices (``N×S×S``) and coverage ``α``."""
        n, c, h, w = x.shape
        flat, alpha, colour = self._window_alpha_and_pixels(texture, params, h, w)
        index = flat.flatten(1)[:, None].expand(n, c, -1)
        pixels = x.reshape(n, c, h * w)
        under = pixels.gather(2, index).reshape(colour.shape)
        pasted = pixels.scatter(2, index, ((1 - alpha) * under + colour).flatten(2)).reshape(n, c, h, w)
        return pasted, flat, alpha


@dataclass(frozen=True, eq=False)
class MaskPlacement(Placement):
    """A full-image texture seen through a fixed binary support: ``(1 − M) ⊙ x + M ⊙ p``. ``masks``
    holds one mask for every image (``1×c×H×W``) or one per image of the data set (``N×c×H×W``,
    e.g. eyeglass frames from each face's box), picked by the images' ``index``."""

    masks: Tensor

    def texture_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        c, h, w = image_shape
        check_mask(self.masks, (self.masks.shape[0], c, h, w), owner="mask")
        return c, h, w

    def sample(self, x: Tensor, index: Tensor, generator: torch.Generator | None) -> dict[str, Tensor]:
        rows = index if self.masks.shape[0] > 1 else torch.zeros_like(index)
        return {"mask": self.masks.to(x.device, x.dtype)[rows]}

    def paste(self, x: Tensor, texture: Tensor, params: dict[str, Tensor]) -> Tensor:
        m = params["mask"]
        return (1 - m) * x + m * texture

    def paste_and_cover(self, x: Tensor, texture: Tensor, params: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        return self.paste(x, texture, params), params["mask"].amax(dim=1) > 0.5

    def support(self, texture: Tensor) -> Tensor | None:
        return self.masks.amax(dim=(0, 1)).to(texture)


# ------------------------------------------------------------------------------- the result
@dataclass
class Texture:
    """A trained universal texture: ``texture`` (``C×h×w`` in ``[0, 1]``), how it is placed, the
    goal it was trained for (``target`` class, or ``None``: untargeted), its printability (``nps``,
    ``tv``), the training history (one dict of metrics per step) and the ``task`` of the model it
    attacks (whose labels it may hide: a segmenter's pixels under it count for nothing, a detector's
    box more than half under it is gone)."""

    texture: Tensor
    placement: Placement
    target: int | None
    nps: float
    tv: float
    history: list[dict[str, float]] = field(default_factory=list)
    task: Task = CLASSIFICATION

    def placed(self, x: Tensor, y: Tensor | None = None, generator: torch.Generator | None = None,
               index: Tensor | None = None, digital: bool = False) -> tuple[Tensor, Tensor | None]:
        """``x`` with the texture placed, and the labels ``y`` as the placed images show them (the
        task's :meth:`~advrobust.tasks.Task.occlude`). A fresh random placement per image for a patch
        (``digital``: centred at scale 1, no rotation); the mask of each image ``index`` for a masked
        texture."""
        index = torch.arange(x.shape[0], device=x.device) if index is None else index
        if digital and isinstance(self.placement, RandomPlacement):
            params = self.placement.centred(x)
        else:
            params = self.placement.sample(x, index, generator)
        texture = self.texture.to(x)
        if y is not None and self.task.dense:
            pasted, covered = self.placement.paste_and_cover(x, texture, params)
            return pasted, self.task.occlude(y, covered)
        return self.placement.paste(x, texture, params), y

    def apply(self, x: Tensor, generator: torch.Generator | None = None, index: Tensor | None = None) -> Tensor:
        """``x`` with the texture placed (a fresh random placement per image for a patch; the mask of
        each image ``index`` for a masked texture)."""
        return self.placed(x, None, generator, index)[0]

    def apply_digital(self, x: Tensor, index: Tensor | None = None) -> Tensor:
        """The digital setting: a patch centred at scale 1 with no rotation; a mask as it is."""
        return self.placed(x, None, None, index, digital=True)[0]


# ------------------------------------------------------------------------------- training
@dataclass(frozen=True)
class _Config:
    steps: int
    batch_size: int
    lr: float
    nps_weight: float
    tv_weight: float
    palette: Tensor
    loss: str


def train_texture(
    model: Callable[[Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    target: int | None,
    placement: Placement,
    transform: Transform,
    config: _Config,
    generator: torch.Generator,
    callback: Callback | None = None,
    task: Task = CLASSIFICATION,
) -> Texture:
    """Brown et al. (2017), eq. 2 with the printability terms: Adam on the texture, projected onto
    ``[0, 1]``, one fresh batch of images, placements and transformations per step. The objective
    and the success are the ``task``'s (``y`` in its tensor form); a dense task's labels follow
    every draw: hidden under the texture (:meth:`~advrobust.tasks.Task.occlude`), then moved with
    the scene (:meth:`~advrobust.tasks.Task.follow`)."""
    check_images("train_texture", x)
    c, h, w = placement.texture_shape(tuple(x.shape[1:]))
    texture = torch.rand(c, h, w, generator=generator, dtype=x.dtype, device=x.device).requires_grad_(True)
    optimizer = torch.optim.Adam([texture], lr=config.lr)
    objective = task.objective(config.loss)
    runner = RuntimePolicy().runner(model)  # the CPU fast path where it applies: the same function, faster
    support = placement.support(texture.detach())
    palette = config.palette.to(x)
    history: list[dict[str, float]] = []
    n = x.shape[0]
    for step in range(config.steps):
        index = torch.randint(0, n, (min(config.batch_size, n),), generator=generator, device=x.device)
        xb, yb = x[index], y[index]
        with torch.no_grad():
            params = placement.sample(xb, index, generator)
            scene = transform.sample(xb, generator)
        if task.dense:  # the labels lose what the texture hides, then move with the scene
            pasted, covered = placement.paste_and_cover(xb, texture, params)
            with torch.no_grad():
                yb = task.follow(task.occlude(yb, covered), transform, scene, (x.shape[-2], x.shape[-1]))
        else:
            pasted = placement.paste(xb, texture, params)
        tb = None if target is None else task.class_target(target, yb)
        z = runner.forward(transform.apply(pasted, scene))
        attack_term = objective(z, yb, tb).mean()
        printability = nps(texture, palette, support) if config.nps_weight else texture.new_zeros(())
        smoothness = total_variation(texture, support) if config.tv_weight else texture.new_zeros(())
        loss = -attack_term + config.nps_weight * printability + config.tv_weight * smoothness
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            texture.clamp_(0.0, 1.0)
            success = task.is_adversarial(z.detach(), yb, tb)
        metrics = {"objective": float(attack_term.detach()), "nps": float(printability.detach()),
                   "tv": float(smoothness.detach()),
                   "success": float(success.float().mean())}
        history.append(metrics)
        if callback is not None:
            callback(step, metrics)
    final = texture.detach()
    return Texture(
        texture=final,
        placement=placement,
        target=target,
        nps=float(nps(final, palette, support)),
        tv=float(total_variation(final, support)),
        history=history,
        task=task,
    )


class UniversalTexture:
    """Shared configuration of :class:`UniversalPatch` and :class:`UniversalMask` (see the module
    docstring). ``transform``: the scene distribution of the expectation (default
    :func:`advrobust.transforms.physical`; ``Identity()`` trains a digital texture); ``steps`` Adam
    steps of ``batch_size`` images at learning rate ``lr``; ``nps_weight``/``tv_weight`` the weights of
    the printability terms against ``palette`` (default :func:`advrobust.printability.default_palette`);
    ``loss`` the objective (``"ce"`` as in the paper, or ``"margin"``); ``seed``."""

    def __init__(
        self,
        placement: Placement,
        *,
        transform: Transform | None = None,
        steps: int = 500,
        batch_size: int = 64,
        lr: float = 0.05,
        nps_weight: float = 0.0,
        tv_weight: float = 0.0,
        palette: Tensor | None = None,
        loss: str = "ce",
        seed: int | None = 0,
    ) -> None:
        owner = type(self).__name__
        if transform is not None and not isinstance(transform, Transform):
            raise InputError(f"{owner}: transform must be an advrobust.transforms.Transform, got {transform!r}")
        self.placement = placement
        self.transform = physical() if transform is None else transform
        self.config = _Config(
            steps=check_positive_int(owner, "steps", steps),
            batch_size=check_positive_int(owner, "batch_size", batch_size),
            lr=check_range(owner, "lr", lr),
            nps_weight=check_range(owner, "nps_weight", nps_weight),
            tv_weight=check_range(owner, "tv_weight", tv_weight),
            palette=check_palette(default_palette() if palette is None else palette),
            loss=loss,
        )
        get_loss(loss)
        self.seed = seed

    def fit(
        self,
        model: Callable[[Tensor], Tensor],
        x: Tensor,
        y: Tensor,
        target: int | None = None,
        *,
        generator: torch.Generator | None = None,
        callback: Callback | None = None,
        task: Task | str | None = None,
    ) -> Texture:
        """Train the texture on the images ``x`` (labels ``y``, in any form the task accepts);
        ``target`` a class for a targeted texture. For a classifier, images of the target class are
        left out (they need no attack); for a segmenter, ``target`` is the class every pixel should
        take; for a detector, ``0`` makes every object vanish. ``task``: the model's task (a name or
        a :class:`~advrobust.tasks.Task`; by default the model's own, else inferred from ``y``).
        ``callback(step, metrics)`` is told the objective, NPS, TV and batch success after every step."""
        check_images(type(self).__name__, x)
        task = resolve_task(task, model, y)
        y = task.labels(y, x)
        if float(x.min()) < 0 or float(x.max()) > 1:
            raise InputError("x must lie in [0, 1]: pass raw pixels, normalization belongs inside the model")
        if generator is None:
            generator = torch.Generator(device=x.device)
            if self.seed is None:
                generator.seed()
            else:
                generator.manual_seed(int(self.seed))
        keep = images_to_attack(model, x, y, target, task)
        placement = self.placement
        if isinstance(placement, MaskPlacement) and placement.masks.shape[0] > 1:
            placement = MaskPlacement(placement.masks[keep.to(placement.masks.device)])
        with evaluation_mode(model), parameters_frozen(model):
            return train_texture(model, x[keep], y[keep], None if target is None else int(target),
                                 placement, self.transform, self.config, generator, callback, task)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(placement={self.placement!r}, transform={self.transform.describe()!r})"


class UniversalPatch(UniversalTexture):
    """The adversarial patch of Brown et al. (2017): one square (or round) patch covering ``area``
    of the image, trained over a data set at random locations, scales in ``[scale_min, 1]`` and
    rotations up to ``rotation`` degrees, under the scene ``transform``.

        patch = UniversalPatch(area=0.1, steps=500).fit(model, x_train, y_train, target=3)
        x_patched = patch.apply(x_test, generator)
    """

    def __init__(self, area: float = 0.1, *, scale_min: float = 0.8, rotation: float = 20.0,
                 shape: str = "square", region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0),
                 **kwargs: Any) -> None:
        super().__init__(RandomPlacement(area, scale_min, rotation, shape, tuple(region)), **kwargs)


class UniversalMask(UniversalTexture):
    """One texture for every image, seen through a binary ``mask`` (Sharif et al. 2016's universal
    eyeglass frames; a sticker, whose shape :func:`advrobust.attacks.sticker_mask.sticker_mask` finds
    as RP2 does): ``1×c×H×W`` for all images, or ``N×c×H×W``, one per training image."""

    def __init__(self, mask: Tensor, **kwargs: Any) -> None:
        super().__init__(MaskPlacement(check_mask(mask, owner="UniversalMask mask")), **kwargs)


def images_to_attack(model: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, target: int | None,
                     task: Task) -> Tensor:
    """Which training images a universal attack on ``model`` learns from (``y`` in the task's
    form): all of them, but a classifier's images of the target class (they need no attack). Checks
    first, in one line each, that the model's output is the task's and that its classes hold the
    labels and the target."""
    with torch.no_grad(), evaluation_mode(model):
        z = task.check_output(model(x[:2]), x[:2])
    task.check_classes(z, y, None if target is None else task.class_target(int(target), y))
    keep = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    if target is not None and not task.dense:
        keep = y != int(target)
    if not bool(keep.any()):
        raise InputError(f"every training image is already of the target class {target}")
    return keep


@contextmanager
def parameters_frozen(model: Any) -> Iterator[None]:
    """The model's parameters need no gradient while a texture trains; restored afterwards."""
    params = [p for p in model.parameters() if p.requires_grad] if isinstance(model, nn.Module) else []
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
