"""The two schedules of masked-autoregressive generation, as integers both the PyTorch sampler and the C++ runtime
compute the same way (csrc/ar_schedule.cpp; tests compare them value by value):

- the mask schedule (MaskGIT cosine): after AR step k of K, floor(L cos(pi/2 (k+1)/K)) of the L tokens are still
  masked, with at least one token revealed per step (MAR's clamp), so step K-1 reveals the rest;
- the head-step schedule T(k): how many ODE steps the diffusion head takes for the tokens revealed at AR step k.
  DiSA (Zhao et al. 2025) anneals it: later tokens are better determined by the ones already drawn.
    constant   T(k) = T_hi
    linear     T(k) = T_lo + floor((1 - k/(K-1)) (T_hi - T_lo))
    cosine     T(k) = T_lo + floor((1 + cos(pi k/(K-1))) / 2 (T_hi - T_lo))
    two_stage  T(k) = T_hi for k < ceil(split K), else T_lo
"""
from __future__ import annotations

import dataclasses
import math

KINDS = ("constant", "linear", "cosine", "two_stage")
# floor() of a product that is mathematically an integer (e.g. 64 cos(pi/3) = 32.000000000000004) must not depend
# on the last ulp of cos(): both implementations add this before flooring
FLOOR_EPS = 1e-9


def masked_after(k: int, n_ar_steps: int, n_tokens: int) -> list[int]:
    """Tokens still masked after each AR step 0..k (the whole list up to step k)."""
    out, prev = [], n_tokens
    for j in range(k + 1):
        m = math.floor(n_tokens * math.cos(math.pi / 2 * (j + 1) / n_ar_steps) + FLOOR_EPS)
        m = 0 if j == n_ar_steps - 1 else max(0, min(prev - 1, m))
        out.append(m)
        prev = m
    return out


def tokens_per_step(n_ar_steps: int, n_tokens: int) -> list[int]:
    """How many tokens AR step k reveals, k = 0..K-1 (sums to n_tokens)."""
    if not 1 <= n_ar_steps <= n_tokens:
        raise ValueError(f"mar schedule: AR steps must be in 1..{n_tokens} (the token count), got {n_ar_steps}")
    m = masked_after(n_ar_steps - 1, n_ar_steps, n_tokens)
    return [prev - cur for prev, cur in zip([n_tokens] + m[:-1], m)]


@dataclasses.dataclass(frozen=True)
class HeadSchedule:
    kind: str = "constant"
    t_hi: int = 50
    t_lo: int = 5
    split: float = 0.5  # two_stage: the share of AR steps at t_hi

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"mar schedule: unknown head schedule '{self.kind}' (expected one of {', '.join(KINDS)})")
        if not (1 <= self.t_lo <= self.t_hi <= 10000):
            raise ValueError(f"mar schedule: need 1 <= t_lo <= t_hi <= 10000 (got t_lo {self.t_lo}, t_hi {self.t_hi})")
        if not 0.0 <= self.split <= 1.0:
            raise ValueError(f"mar schedule: split must be in [0, 1] (got {self.split})")

    def steps(self, n_ar_steps: int) -> list[int]:
        K, hi, lo = n_ar_steps, self.t_hi, self.t_lo
        if self.kind == "constant":
            return [hi] * K
        if self.kind == "two_stage":
            k0 = math.ceil(self.split * K - FLOOR_EPS)
            return [hi if k < k0 else lo for k in range(K)]
        out = []
        for k in range(K):
            f = 1.0 if K == 1 else k / (K - 1)
            w = 1 - f if self.kind == "linear" else (1 + math.cos(math.pi * f)) / 2
            out.append(lo + math.floor(w * (hi - lo) + FLOOR_EPS))
        return out

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def head_evaluations(steps: list[int], n_ar_steps: int, n_tokens: int) -> int:
    """Head calls per image (one call = one token at one ODE step)."""
    return sum(n * t for n, t in zip(tokens_per_step(n_ar_steps, n_tokens), steps))


def equal_budget_constant(schedule: HeadSchedule, n_ar_steps: int, n_tokens: int) -> HeadSchedule:
    """The constant schedule with (the nearest integer to) the same head evaluations as `schedule`: the control that
    isolates the effect of annealing from that of a smaller budget."""
    total = head_evaluations(schedule.steps(n_ar_steps), n_ar_steps, n_tokens)
    t = max(1, round(total / n_tokens))
    return HeadSchedule("constant", t, min(t, schedule.t_lo))


def flow_times(n_steps: int) -> list[float]:
    """The head's ODE grid: n_steps + 1 uniform times from 1 (noise) to 0 (token)."""
    return [1.0 - i / n_steps for i in range(n_steps + 1)]
