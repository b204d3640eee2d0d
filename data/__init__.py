"""Atari data: the episode file contract, ALE recording with scripted policies, and training windows."""
