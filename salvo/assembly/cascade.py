"""A small layered signalling-cascade model, simulated with scipy.

``n_cascades`` parallel cascades of ``n_layers`` kinases each. A kinase ``X`` with total amount
``T`` is switched on by the active kinase upstream (the input ligand for layer 1) and off by a
phosphatase, both with Michaelis-Menten kinetics::

    dXa/dt = kc * (U / U_total) * (T - Xa) / (Km_a + T - Xa)  -  vmax * Xa / (Km_d + Xa)

The response of a cascade is the active fraction of its last kinase; the outcome is the mean
response over cascades. Features summarise those trajectories.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.integrate import solve_ivp


@dataclass(frozen=True)
class CascadeParams:
    """The drawn parameters of one model instance; arrays have shape (n_cascades, n_layers)."""

    totals: np.ndarray  # initial (total) amount of each kinase
    kc: np.ndarray
    vmax: np.ndarray
    km_act: np.ndarray
    km_deact: np.ndarray
    stimulus: float  # fraction of the input ligand present, in (0, 1]

    def scaled(self, **factors: np.ndarray) -> "CascadeParams":
        """A copy with the named arrays multiplied element-wise by the given factors."""
        return replace(self, **{k: getattr(self, k) * v for k, v in factors.items()})


def draw_params(spec: dict[str, Any], gen: dict[str, Any], rng: np.random.Generator) -> CascadeParams:
    """Draw one model instance: each value uniform in its configured range."""
    shape = (int(spec["n_cascades"]), int(spec["n_layers"]))

    def uniform(key: str) -> np.ndarray:
        lo, hi = gen[key]
        return rng.uniform(lo, hi, size=shape)

    lo, hi = gen["stimulus_range"]
    return CascadeParams(
        totals=uniform("ic_range"),
        kc=uniform("kc_range"),
        vmax=uniform("vmax_range"),
        km_act=uniform("km_range"),
        km_deact=uniform("km_range"),
        stimulus=float(rng.uniform(lo, hi)),
    )


def simulate(params: CascadeParams, *, t_end: float, n_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Integrate the model from all-inactive; return times and active fractions (c, l, t)."""
    n_c, n_l = params.totals.shape
    totals = params.totals

    def rhs(_t: float, y: np.ndarray) -> np.ndarray:
        xa = np.clip(y.reshape(n_c, n_l), 0.0, totals)
        upstream = np.empty_like(xa)
        upstream[:, 0] = params.stimulus
        upstream[:, 1:] = xa[:, :-1] / totals[:, :-1]
        inactive = totals - xa
        act = params.kc * upstream * inactive / (params.km_act + inactive)
        deact = params.vmax * xa / (params.km_deact + xa)
        return (act - deact).ravel()

    times = np.linspace(0.0, float(t_end), int(n_points))
    sol = solve_ivp(rhs, (0.0, float(t_end)), np.zeros(n_c * n_l), t_eval=times, method="LSODA", rtol=1e-5, atol=1e-6)
    if not sol.success:
        raise RuntimeError(f"cascade simulation failed: {sol.message}")
    frac = np.clip(sol.y.reshape(n_c, n_l, -1), 0.0, None) / totals[:, :, None]
    return sol.t, frac


def extract_features(times: np.ndarray, responses: np.ndarray) -> dict[str, float]:
    """Per-cascade and outcome features from response trajectories of shape (c, t)."""
    feats: dict[str, float] = {}
    span = float(times[-1] - times[0]) or 1.0
    series = {f"c{c}": responses[c] for c in range(responses.shape[0])}
    series["outcome"] = responses.mean(axis=0)
    for name, y in series.items():
        peak_i = int(np.argmax(y))
        final = float(y[-1])
        half = np.nonzero(y >= 0.5 * y[peak_i])[0] if y[peak_i] > 0 else np.array([0])
        feats[f"{name}_final"] = final
        feats[f"{name}_peak"] = float(y[peak_i])
        feats[f"{name}_t_peak"] = float(times[peak_i])
        feats[f"{name}_t_half"] = float(times[int(half[0])])
        feats[f"{name}_auc"] = float(np.trapezoid(y, times) / span)
    return feats
