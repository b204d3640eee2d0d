"""Open-loop rollout evaluation: predictions, side-by-side videos and Breakout-aware metrics."""
