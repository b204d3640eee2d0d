"""One-step f-distill (Xu et al. 2025): distribution matching with an f-divergence, on teacher-forced windows.

A generator G (initialised from the teacher) maps pure noise at t = 1, with the real context and actions, to a
frame in one call. A fake score network F (a teacher copy) learns G's output distribution with the ordinary
flow x0 loss. For G's update, its sample is noised to a random t; the teacher's x0 prediction T and the fake
score's F give the distribution-matching direction F - T (in x0 parameterisation the score difference up to a
positive per-t factor), normalised per sample by mean |G - T| as in DMD. f-distill weights that direction per
sample by h(r) = r^2 f''(r), r = p_data / p_G: reverse KL gives h = 1 (plain DMD, mode-seeking), forward KL
h = r (mass-covering, unstable), Jensen-Shannon h = r / (1 + r) (bounded; the paper's best). r comes from a
discriminator, so a GAN term is nearly free and is added to G's loss.

The discriminator is a small head on the frozen teacher's features after a middle block: the teacher already
reads noisy frames at every t, and a head needs few parameters to train in a short run.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nextframe.distill.windows import Window, time_weight
from nextframe.models.dit import NextFrameDiT
from nextframe.models.flow import add_noise, sample_train_times


def h_of_r(r: torch.Tensor, divergence: str) -> torch.Tensor:
    """h(r) = r^2 f''(r) for the three divergences f-distill compares."""
    if divergence == "rkl":
        return torch.ones_like(r)
    if divergence == "js":
        return r / (1.0 + r)
    if divergence == "fkl":
        return r
    raise ValueError(f"fdistill: unknown divergence {divergence!r} (expected js, rkl or fkl)")


def density_ratio(logit: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """r = exp(D logit) (the optimal logistic discriminator's logit is log p_data / p_G), clamped: one
    confident discriminator output must not hand a single sample the whole batch's weight."""
    return logit.exp().clamp(lo, hi)


def normalise_per_bin(r: torch.Tensor, t: torch.Tensor, n_bins: int) -> torch.Tensor:
    """r / mean(r) inside each of n_bins equal bins of t: the discriminator separates real from fake far more
    easily at low noise, so without this the low-t samples would dominate the weights by noise level alone."""
    bins = (t * n_bins).long().clamp(0, n_bins - 1)
    out = torch.empty_like(r)
    for i in range(n_bins):
        sel = bins == i
        if sel.any():
            out[sel] = r[sel] / r[sel].mean()
    return out


def generator_weights(logit: torch.Tensor, t: torch.Tensor, divergence: str, lo: float, hi: float,
                      n_bins: int) -> torch.Tensor:
    """Per-sample weights h(r), normalised to batch mean 1 (so the divergence changes the direction's
    weighting, not the step size)."""
    h = h_of_r(normalise_per_bin(density_ratio(logit, lo, hi), t, n_bins), divergence)
    return h / h.mean()


class DiscriminatorHead(nn.Module):
    """LayerNorm + MLP to one logit per frame, on the mean over the frame's tokens of teacher features."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # [B, F, N, D] -> [B, F]
        return self.net(features.float().mean(dim=2))[..., 0]


def generate(gen: NextFrameDiT, w: Window, noise: torch.Tensor) -> torch.Tensor:
    """One network call at t = 1: the one-step sampler (Euler from 1 to 0 returns the x0 prediction)."""
    return w.predict(gen, noise, torch.ones(noise.shape[:2]))


def _times(w: Window, mean: float, std: float, generator) -> torch.Tensor:
    return sample_train_times(w.target.shape[:2], generator=generator, mean=mean, std=std)


def fake_score_loss(fake: NextFrameDiT, w: Window, x0_gen: torch.Tensor, motion_weight: float, mean: float,
                    std: float, generator=None) -> torch.Tensor:
    """The teacher's own training objective, on G's (detached) samples instead of data."""
    t = _times(w, mean, std, generator)
    x_t = add_noise(x0_gen, t, torch.randn(x0_gen.shape, generator=generator))
    err = (w.predict(fake, x_t, t) - x0_gen).square() * w.change_weights(x0_gen, motion_weight)
    return (err * time_weight(t)).mean()


def discriminator_loss(teacher: NextFrameDiT, disc: DiscriminatorHead, w: Window, x0_gen: torch.Tensor,
                       feature_block: int, mean: float, std: float, generator=None) -> torch.Tensor:
    """Logistic GAN loss on teacher features: real = noised data frames, fake = noised G samples (same t)."""
    t = _times(w, mean, std, generator)
    with torch.no_grad():  # the teacher is frozen and the head is trained alone: no graph through the teacher
        _, real = w.predict(teacher, add_noise(w.target, t, torch.randn(w.target.shape, generator=generator)), t,
                            return_features=True, feature_block=feature_block)
        _, fake = w.predict(teacher, add_noise(x0_gen, t, torch.randn(x0_gen.shape, generator=generator)), t,
                            return_features=True, feature_block=feature_block)
    return F.softplus(-disc(real)).mean() + F.softplus(disc(fake)).mean()


def generator_loss(gen: NextFrameDiT, teacher: NextFrameDiT, fake: NextFrameDiT, disc: DiscriminatorHead,
                   w: Window, cfg, generator=None) -> tuple[torch.Tensor, dict]:
    """f-divergence distribution matching + lambda_gan * non-saturating GAN. cfg: a DistillConfig."""
    x0 = generate(gen, w, torch.randn(w.target.shape, generator=generator))
    t = _times(w, cfg.time_logit_mean, cfg.time_logit_std, generator)
    x_t = add_noise(x0, t, torch.randn(x0.shape, generator=generator))
    # one teacher pass: its x0 (detached) for the direction, its features (with a graph back to G's sample)
    # for the GAN term; the teacher's weights are frozen, so only G receives gradients through it
    teacher_x0, feats = w.predict(teacher, x_t, t, return_features=True, feature_block=cfg.feature_block)
    teacher_x0 = teacher_x0.detach()
    with torch.no_grad():
        fake_x0 = w.predict(fake, x_t.detach(), t)
        scale = (x0 - teacher_x0).abs().mean(dim=(2, 3, 4), keepdim=True).clamp_min(1e-6)
        direction = (fake_x0 - teacher_x0) / scale
    logit = disc(feats)
    h = generator_weights(logit.detach(), t, cfg.divergence, cfg.ratio_min, cfg.ratio_max, cfg.ratio_bins)
    # the gradient of 0.5 * mean((x0 - sg(x0 - direction))^2) w.r.t. x0 is direction / n_pixels
    dm = 0.5 * (x0 - (x0 - direction).detach()).square().mean(dim=(2, 3, 4))
    loss_dm = (h * dm).mean()
    loss_gan = F.softplus(-logit).mean()
    stats = {"loss_dm": loss_dm.item(), "loss_gan": loss_gan.item(), "h_max": h.max().item()}
    return loss_dm + cfg.lambda_gan * loss_gan, stats
