"""Record ALE episodes into the episode format (docs/formats.md).

Deterministic for a given seed: episode i uses seed (seed, i) for both the emulator reset and the policy,
and the policy is drawn from the mix (or fixed by --policy). The ROMs ship inside the ale_py wheel.
"""
from __future__ import annotations

import os

import numpy as np

from nextframe.data.episode import FRAMESKIP, Episode, save_episode
from nextframe.data.policies import POLICY_MIX, make_policy



def make_env(game: str):
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    try:
        return gym.make(f"ALE/{game}-v5", frameskip=FRAMESKIP, repeat_action_probability=0.0, full_action_space=False)
    except gym.error.Error as e:
        raise ValueError(f"record: unknown ALE game '{game}' ({e})") from None


def record_episode(game: str, n_steps: int, seed: int, index: int, policy: str | None = None, env=None):
    """Returns (Episode, policy name). The episode ends early on game over (then T < n_steps)."""
    env = env or make_env(game)
    rng = np.random.default_rng([seed, index])
    name = policy or POLICY_MIX[int(rng.integers(len(POLICY_MIX)))]
    pol = make_policy(name, rng, int(env.action_space.n), game)
    obs, _ = env.reset(seed=int(rng.integers(2**31 - 1)))
    ale = env.unwrapped.ale
    frames, actions = [obs], []
    for _ in range(n_steps):
        a = pol.act(ale.getRAM())
        obs, _, terminated, truncated, _ = env.step(a)
        frames.append(obs)
        actions.append(a)
        if terminated or truncated:
            break
    ep = Episode(np.stack(frames).astype(np.uint8), np.asarray(actions, dtype=np.int64), game, FRAMESKIP)
    return ep, name


def record(game: str, n_episodes: int, n_steps: int, out_dir: str, seed: int, policy: str | None = None, progress=True):
    from tqdm import tqdm

    if n_episodes < 1 or n_steps < 1:
        raise ValueError(f"record: episodes and steps must be positive (got {n_episodes}, {n_steps})")
    os.makedirs(out_dir, exist_ok=True)
    env = make_env(game)
    paths = []
    bar = tqdm(total=n_episodes * n_steps, unit="step", desc=f"record {game}", disable=not progress)
    for i in range(n_episodes):
        ep, name = record_episode(game, n_steps, seed, i, policy, env)
        path = os.path.join(out_dir, f"{game.lower()}_s{seed}_e{i:04d}.npz")
        save_episode(path, ep, seed=seed, index=i, policy=name)
        paths.append(path)
        bar.update(n_steps)
        bar.set_postfix(policy=name, T=ep.n_steps)
    bar.close()
    env.close()
    return paths
