"""SMPL parameters of a batch of people: :class:`SMPLParams`, the one record fitlib passes around.

The regressor returns it, the fitter takes it as ``init`` and returns it, results and the label
store keep it. Torch in, torch out; :meth:`SMPLParams.numpy` and :meth:`SMPLParams.from_numpy` cross
to numpy. Units: radians (axis-angle) and metres; a fit's ``global_orient`` and ``transl`` are in
the camera frame (OpenCV: x right, y down, z forward), SMPL's ``transl`` argument (it offsets the
mesh origin, not the pelvis).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import numpy as np
import torch


MAX_ABS_BETA = 10.0
"""Largest shape coefficient an initial estimate may have (betas are about N(0, 1) for SMPL and the open model)."""


@dataclass
class SMPLParams:
    """SMPL parameters of people in a batch of leading shape ``[...]`` (usually ``[P]``).

    Attributes:
        global_orient: [..., 3] axis-angle (radians) of the pelvis (joint 0).
        body_pose: [..., 69] axis-angle (radians) of joints 1..23 in SMPL order.
        betas: [..., 10] shape coefficients.
        transl: [..., 3] translation in metres.

    Any field may be None where it is not known (e.g. an initial estimate of the pose alone).
    """

    global_orient: torch.Tensor | None = None
    body_pose: torch.Tensor | None = None
    betas: torch.Tensor | None = None
    transl: torch.Tensor | None = None

    FIELDS: ClassVar[tuple[str, ...]] = ("global_orient", "body_pose", "betas", "transl")
    SIZES: ClassVar[dict[str, int]] = {"global_orient": 3, "body_pose": 69, "betas": 10, "transl": 3}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pose(cls, pose: torch.Tensor | None, betas: torch.Tensor | None = None,
                  transl: torch.Tensor | None = None) -> "SMPLParams":
        """From a full pose [..., 72] or [..., 24, 3] (joint 0 = global orientation), betas and transl."""
        if pose is None:
            return cls(None, None, betas, transl)
        pose = pose.reshape(*pose.shape[:-2], 72) if pose.shape[-2:] == (24, 3) else pose
        if pose.shape[-1] != 72:
            raise ValueError(f"pose must have shape [..., 72] or [..., 24, 3], got {tuple(pose.shape)}")
        return cls(pose[..., :3], pose[..., 3:], betas, transl)

    @classmethod
    def from_numpy(cls, arrays: Mapping[str, Any], dtype: torch.dtype = torch.float32,
                   device: torch.device | str | None = None) -> "SMPLParams":
        """From numpy arrays (or lists) named as the fields, or ``pose`` [..., 72] for the first two."""
        return as_params(arrays, None, dtype, device)

    @classmethod
    def cat(cls, items: list["SMPLParams"]) -> "SMPLParams":
        """Concatenate along the first dim; every item must give the same fields."""
        given = {k for k in cls.FIELDS if getattr(items[0], k) is not None}
        if any({k for k in cls.FIELDS if getattr(p, k) is not None} != given for p in items):
            raise ValueError("SMPLParams.cat: the records give different fields")
        return cls(**{k: torch.cat([getattr(p, k) for p in items]) if k in given else None for k in cls.FIELDS})

    # ---------------------------------------------------------------------- access
    @property
    def pose(self) -> torch.Tensor:
        """[..., 24, 3] axis-angle, joint 0 = global orientation (both parts must be given)."""
        if self.global_orient is None or self.body_pose is None:
            raise ValueError("SMPLParams.pose needs both global_orient and body_pose")
        return torch.cat([self.global_orient, self.body_pose], -1).reshape(*self.global_orient.shape[:-1], 24, 3)

    def given(self) -> tuple[str, ...]:
        """Names of the fields that are not None, in :attr:`FIELDS` order."""
        return tuple(k for k in self.FIELDS if getattr(self, k) is not None)

    def __len__(self) -> int:
        for k in self.FIELDS:
            if getattr(self, k) is not None:
                return int(getattr(self, k).shape[0])
        return 0

    def map(self, fn) -> "SMPLParams":
        """A new record with ``fn`` applied to every given field."""
        return SMPLParams(**{k: None if getattr(self, k) is None else fn(getattr(self, k)) for k in self.FIELDS})

    def index(self, rows: torch.Tensor | slice | int) -> "SMPLParams":
        """The people at ``rows`` (along the first dim)."""
        return self.map(lambda t: t[rows])

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "SMPLParams":
        return self.map(lambda t: t.to(device=device, dtype=dtype))

    def detach(self) -> "SMPLParams":
        return self.map(torch.Tensor.detach)

    def clone(self) -> "SMPLParams":
        return self.map(torch.Tensor.clone)

    def replace(self, **fields: torch.Tensor | None) -> "SMPLParams":
        """A copy with some fields replaced."""
        return dataclasses.replace(self, **fields)

    def numpy(self) -> dict[str, np.ndarray]:
        """The given fields as float64 numpy arrays, by field name."""
        return {k: getattr(self, k).detach().cpu().numpy().astype(np.float64) for k in self.given()}


def as_params(value: Any, n: int | None, dtype: torch.dtype = torch.float32,
              device: torch.device | str | None = None) -> SMPLParams:
    """Parameters for ``n`` people as a checked :class:`SMPLParams` of new, finite tensors.

    Args:
        value: an :class:`SMPLParams`; an object with a ``params`` record (a
            :class:`fitlib.FitResult`); or a mapping with any of ``global_orient``,
            ``body_pose``, ``betas``, ``transl`` and ``pose`` ([n, 72] or [n, 24, 3], for the first
            two), as arrays, lists or tensors; None entries are left out.
        n: the number of people, or None to take it from the first entry.
        dtype, device: of the returned tensors.
    Returns:
        :class:`SMPLParams` with fields [n, 3], [n, 69], [n, 10], [n, 3] (the ones given).
    Raises:
        ValueError naming the entry: unknown entries, wrong sizes, non-numeric or non-finite
        values, both ``pose`` and ``global_orient``/``body_pose``, betas beyond :data:`MAX_ABS_BETA`,
        or a translation at or behind the camera (z <= 0).
    """
    if isinstance(getattr(value, "params", None), SMPLParams):
        value = value.params
    if isinstance(value, SMPLParams):
        value = {k: getattr(value, k) for k in value.given()}
    if not isinstance(value, Mapping):
        raise ValueError(f"init must be SMPLParams, a FitResult or a dict of pose / betas / transl, "
                         f"got {type(value).__name__}")
    sizes = {"pose": 72, **SMPLParams.SIZES}
    unknown = sorted(set(value) - set(sizes))
    if unknown:
        raise ValueError(f"init has unknown entries {unknown}; it takes {sorted(sizes)}")
    given = {k: v for k, v in value.items() if v is not None}
    if "pose" in given and ({"global_orient", "body_pose"} & set(given)):
        raise ValueError("init gives both 'pose' and 'global_orient'/'body_pose': give one or the other")
    out: dict[str, torch.Tensor] = {}
    for key, v in given.items():
        if isinstance(v, torch.Tensor):  # e.g. a regressor's output
            v = v.detach()
        try:
            t = torch.as_tensor(np.asarray(v, dtype=np.float64) if not isinstance(v, torch.Tensor) else v,
                                dtype=dtype, device=device)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"init {key} is not numeric: {type(v).__name__}") from None
        count = n if n is not None else (t.numel() // sizes[key] if t.ndim > 1 else 1)
        if t.numel() != count * sizes[key]:
            raise ValueError(f"init {key} must hold {sizes[key]} numbers per person for {count} people, "
                             f"got shape {tuple(t.shape)}")
        t = t.reshape(count, sizes[key]).clone()
        if not torch.isfinite(t).all():
            raise ValueError(f"init {key} contains NaN or infinite values")
        n = count
        out[key] = t
    if "pose" in out:
        pose = out.pop("pose")
        out["global_orient"], out["body_pose"] = pose[:, :3].contiguous(), pose[:, 3:].contiguous()
    if "betas" in out and bool((out["betas"].abs() > MAX_ABS_BETA).any()):
        raise ValueError(f"init betas must lie within +-{MAX_ABS_BETA} (shape coefficients are ~N(0, 1); larger ones "
                         f"are no human body), got {float(out['betas'].abs().max()):.3g}")
    if "transl" in out and bool((out["transl"][:, 2] <= 0).any()):
        raise ValueError("init transl puts a person at or behind the camera (z <= 0; camera frame, z forward)")
    return SMPLParams(**out)
