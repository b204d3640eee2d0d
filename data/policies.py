"""Scripted policies that cover Breakout's state space: the world model must see the paddle everywhere,
the ball in flight, served, missed and bouncing, and every action held for short and long stretches.

Each policy is a small state machine over (rng, RAM); the recorder picks one per episode from the seed.
RAM addresses (Breakout, ALE 0.12): 72 paddle x, 99 ball x, 101 ball y (0 while no ball is in play).
"""
from __future__ import annotations

import numpy as np

NOOP, FIRE, RIGHT, LEFT = 0, 1, 2, 3  # Breakout's minimal action set
PADDLE_X, BALL_X, BALL_Y = 72, 99, 101
# Screen x of the paddle centre is RAM x - 39, of the ball centre RAM x - 48.5 (measured).
BALL_TO_PADDLE_OFFSET = 9.5


class Policy:
    name = "policy"

    def __init__(self, rng: np.random.Generator, n_actions: int):
        self.rng = rng
        self.n_actions = n_actions

    def act(self, ram: np.ndarray) -> int:
        raise NotImplementedError


class StickyRandom(Policy):
    """Uniform random actions held for a random number of steps (1..max_hold, max_hold varied per episode)."""

    name = "sticky_random"

    def __init__(self, rng, n_actions):
        super().__init__(rng, n_actions)
        self.max_hold = int(rng.choice([1, 3, 8, 20, 40]))
        self.action, self.left = 0, 0

    def act(self, ram):
        if self.left <= 0:
            self.action = int(self.rng.integers(self.n_actions))
            self.left = int(self.rng.integers(1, self.max_hold + 1))
        self.left -= 1
        return self.action


class BallTracker(Policy):
    """Moves the paddle under the ball; serves after a random wait when no ball is in play.

    `noise` is the per-step chance of a random action held a few steps, `aim` shifts the target so the
    ball hits the paddle off-centre (different bounce angles), `deadzone` sets how jittery the paddle is.
    """

    name = "tracker"

    def __init__(self, rng, n_actions, noise: float = 0.0):
        super().__init__(rng, n_actions)
        self.noise = noise
        self.deadzone = float(rng.uniform(1.0, 6.0))
        self.aim = float(rng.uniform(-6.0, 6.0))
        self.serve_wait = 0
        self.random_left, self.random_action = 0, 0

    def act(self, ram):
        if ram[BALL_Y] == 0:  # no ball in play: wait a little, then serve
            if self.serve_wait <= 0:
                self.serve_wait = int(self.rng.integers(0, 25))
            self.serve_wait -= 1
            if self.serve_wait <= 0:
                return FIRE
            return int(self.rng.choice([NOOP, LEFT, RIGHT]))
        if self.random_left > 0:
            self.random_left -= 1
            return self.random_action
        if self.rng.random() < self.noise:
            self.random_action = int(self.rng.integers(self.n_actions))
            self.random_left = int(self.rng.integers(0, 10))
            return self.random_action
        if self.rng.random() < 0.02:  # re-aim now and then
            self.aim = float(self.rng.uniform(-6.0, 6.0))
        diff = float(ram[BALL_X]) - float(ram[PADDLE_X]) - BALL_TO_PADDLE_OFFSET + self.aim
        if diff > self.deadzone:
            return RIGHT
        if diff < -self.deadzone:
            return LEFT
        return NOOP


class Switching(Policy):
    """Alternates between the others in segments, so one episode holds both skilled and random play."""

    name = "switching"

    def __init__(self, rng, n_actions):
        super().__init__(rng, n_actions)
        self.parts = [StickyRandom(rng, n_actions), BallTracker(rng, n_actions, noise=0.1)]
        self.current, self.left = 0, 0

    def act(self, ram):
        if self.left <= 0:
            self.current = int(self.rng.integers(len(self.parts)))
            self.left = int(self.rng.integers(30, 200))
        self.left -= 1
        return self.parts[self.current].act(ram)


class Reactive(Policy):
    """Chases the ball only while it falls and drifts at random while it rises. Kept out of the training
    mix: held-out evaluation episodes use it to show behaviour the model never saw recorded."""

    name = "reactive"

    def __init__(self, rng, n_actions):
        super().__init__(rng, n_actions)
        self.tracker = BallTracker(rng, n_actions)
        self.drift = StickyRandom(rng, n_actions)
        self.last_y = 0

    def act(self, ram):
        falling = ram[BALL_Y] > self.last_y
        self.last_y = int(ram[BALL_Y])
        if ram[BALL_Y] == 0 or falling:
            return self.tracker.act(ram)
        a = self.drift.act(ram)
        return NOOP if a == FIRE else a


POLICY_MIX = ("sticky_random", "tracker", "noisy_tracker", "switching")  # what training data is drawn from
HELD_OUT_POLICIES = ("reactive",)


def make_policy(name: str, rng: np.random.Generator, n_actions: int, game: str) -> Policy:
    if game != "Breakout" and name != "sticky_random":
        raise ValueError(f"policies: policy '{name}' reads Breakout RAM (game {game}); use sticky_random")
    if name == "sticky_random":
        return StickyRandom(rng, n_actions)
    if name == "tracker":
        return BallTracker(rng, n_actions, noise=0.0)
    if name == "noisy_tracker":
        return BallTracker(rng, n_actions, noise=float(rng.uniform(0.05, 0.4)))
    if name == "switching":
        return Switching(rng, n_actions)
    if name == "reactive":
        return Reactive(rng, n_actions)
    known = ", ".join(POLICY_MIX + HELD_OUT_POLICIES)
    raise ValueError(f"policies: unknown policy '{name}' (expected one of {known})")
