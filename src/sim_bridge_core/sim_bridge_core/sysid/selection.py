"""Which fitted parameters robot.yaml takes, and why each of the others stays nominal.

A fit moves every unknown, but the data pins only some. The others drift along directions the
data barely sees, compensating one another: written into robot.yaml they reproduce the fitted
runs and mislead on motion of another kind. So after the fit:

1. An unknown is **pinned** when its 95 % interval (from the data alone) is within
   ``IDENTIFIED_WITHIN`` of its value and the fit had settled it. Pinned unknowns are written.
2. The others are fixed at their nominal values, one at a time, the least costly first, for as
   long as the nominal values of all those fixed together still fit the data: the fit's cost
   rises, with the pinned unknowns re-adjusted, by no more than the noise explains (the 95 %
   chi-square quantile, as many degrees of freedom as unknowns fixed, times the noise variance),
   and no pinned unknown moves by more than its 95 % half-width.
   A joint's damping and its servo's kv act alike (both -c*qdot): where their sum is pinned, at
   most one of them is fixed and the other carries the sum.
3. An unpinned unknown that cannot be fixed (the data rules its nominal value out) is written
   as fitted.

The re-adjustment of the pinned unknowns is the linear one, from the fit's Jacobian at its optimum
(the Schur complement of the fixed block of J'J): no second nonlinear fit, which could wander off
where the first one settled. The errors in sysid.json are those of the written model, rolled out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import chi2

# A parameter is pinned when the data fixes it within this fraction of its size (95 %).
IDENTIFIED_WITHIN = 0.1
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Selection:
    """What robot.yaml takes: every unknown's value, and why it stays nominal (None: written)."""

    values: dict[str, float]
    reasons: dict[str, str | None]


def relative_width(half_width: float, value: float, unit: float) -> float:
    """A 95 % half-width relative to the parameter's size (its value, or its unit where that is larger)."""
    return half_width / max(abs(value), unit)


def select(
    unknowns: Sequence[Any],
    values: dict[str, float],
    half_widths: dict[str, float],
    sum_half_widths: dict[str, float],
    moved: dict[str, float],
    hessian: np.ndarray,
    sigma: float,
) -> Selection:
    """The written values and reasons, from the fit's ``values`` and the Gauss-Newton ``hessian``
    J'J (+ the prior's diagonal) in units of each unknown (``Unknown.unit``); ``sigma`` is the
    noise (the floored RMS of the data's residual)."""
    x = np.array([values[u.name] / u.unit for u in unknowns])
    nominal = np.array([u.nominal / u.unit for u in unknowns])
    unpinned = [k for k, u in enumerate(unknowns) if not pinned(u, values, half_widths, moved)]
    # A pinned unknown may move by at most its half-width when others are fixed (in units).
    allowed = np.array([half_widths[u.name] / u.unit for u in unknowns])
    allowed[unpinned] = np.inf

    def adjusted(fixed: list[int]) -> np.ndarray:
        """Every unknown with ``fixed`` at nominal and the pinned ones re-adjusted (least squares);
        the other unpinned ones stay as fitted (the data cannot say where to move them)."""
        point = x.copy()
        point[fixed] = nominal[fixed]
        free = [k for k in range(len(unknowns)) if k not in fixed and k not in unpinned]
        if fixed and free:
            coupling = hessian[np.ix_(free, fixed)]
            point[free] -= np.linalg.solve(hessian[np.ix_(free, free)], coupling @ (nominal - x)[fixed])
        return point

    def rise(fixed: list[int]) -> float:
        """How much the fit's cost rises (linearized) with ``fixed`` at nominal."""
        shift = adjusted(fixed) - x
        return float(shift @ hessian @ shift)

    def acceptable(fixed: list[int]) -> bool:
        """The cost rise within the noise, and every pinned unknown within its interval."""
        shift = adjusted(fixed) - x
        within = float(shift @ hessian @ shift) <= sigma**2 * chi2.ppf(CONFIDENCE, len(fixed))
        return within and bool(np.all(np.abs(shift) <= allowed))

    index = {u.name: k for k, u in enumerate(unknowns)}
    partner = {}  # damping <-> kv of a joint whose damping + kv the data pins
    for joint, half in sum_half_widths.items():
        damping, kv = index[f"{joint}.damping"], index[f"{joint}.kv"]
        if half <= IDENTIFIED_WITHIN * abs(values[f"{joint}.damping"] + values[f"{joint}.kv"]):
            partner |= {damping: kv, kv: damping}
    fixed: list[int] = []
    for k in sorted(unpinned, key=lambda k: rise([k])):
        if partner.get(k) not in fixed and acceptable([*fixed, k]):
            fixed.append(k)
    written = adjusted(fixed)
    reasons: dict[str, str | None] = dict.fromkeys(values)
    for k, u in enumerate(unknowns):
        width = relative_width(half_widths[u.name], values[u.name], u.unit)
        spread = "unbounded" if not math.isfinite(width) else f"±{100 * width:.0f} %"
        if k in fixed:
            reasons[u.name] = (
                f"the data does not pin it (95 % interval {spread}) and its nominal value fits the data as "
                "well as the fitted one, within the noise"
            )
    clipped = {
        u.name: float(np.clip(v * u.unit, u.lower, u.upper)) for u, v in zip(unknowns, written, strict=True)
    }
    return Selection(values=clipped, reasons=reasons)


def pinned(u: Any, values: dict[str, float], half_widths: dict[str, float], moved: dict[str, float]) -> bool:
    """The data fixes ``u`` within IDENTIFIED_WITHIN (95 %), and the fit had settled it."""
    half = half_widths[u.name]
    return relative_width(half, values[u.name], u.unit) <= IDENTIFIED_WITHIN and abs(moved[u.name]) <= half
