"""`nextframe play`: the generated game in a window, keys in, frames out, through the C++ runtime.

Kept apart from the frame loop (as DIAMOND keeps its game/ apart from the model): this file only maps keys to
actions, decodes frames to native resolution, draws them with the FPS and records if asked.
"""
from __future__ import annotations

import os
import time

import numpy as np

# key -> direction/button words, matched against ALE action names (e.g. "UPRIGHTFIRE")
KEY_WORDS = {"K_SPACE": "FIRE", "K_UP": "UP", "K_DOWN": "DOWN", "K_LEFT": "LEFT", "K_RIGHT": "RIGHT"}


def action_for(words: set[str], names: list[str]) -> int:
    """The action whose name is exactly the pressed words (in ALE's order), else the closest subset, else NOOP."""
    best, best_n = names.index("NOOP") if "NOOP" in names else 0, -1
    for i, name in enumerate(names):
        parts = {w for w in ("UP", "DOWN", "LEFT", "RIGHT", "FIRE") if w in name}
        if parts <= words and len(parts) > best_n and name != "NOOP":
            best, best_n = i, len(parts)
    return best


def context_from_game(game: str, n: int, height: int, width: int, seed: int):
    """The first n real frames of a fresh episode (NOOPs, then the model takes over), native and model size."""
    from nextframe.data.dataset import to_model_resolution
    from nextframe.data.record import record_episode

    ep, _ = record_episode(game, n - 1, seed, 0, "sticky_random")
    return ep.frames[:n], to_model_resolution(ep.frames[:n], height, width), ep.actions[: n - 1]


def play(bundle_dir: str, scale: int = 3, record: str | None = None, max_frames: int | None = None,
         seed: int = 0, fps_cap: float = 30.0, script=None, threads: int = 2) -> dict:
    """Run the interactive loop. `script(i) -> action` replaces the keyboard (headless runs and tests)."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    from nextframe.runtime import Session

    with Session(bundle_dir, seed=seed, threads=threads) as s:
        game = s.bundle.game
        names = s.actions
        n_context = s.bundle.history_depth if s.native_resolution else s.bundle.kv_cache["window"]
        native, low, acts = context_from_game(game, n_context, s.height, s.width, seed)
        s.reset(low.transpose(0, 2, 3, 1), [s.no_action] + acts.tolist(), native_reference=native[-1])
        pygame.display.init()  # display and font only: no audio device is opened
        pygame.font.init()
        h, w = native.shape[1:3]
        screen = pygame.display.set_mode((w * scale, h * scale))
        pygame.display.set_caption(f"nextframe: {game}")
        font = pygame.font.Font(None, 24)
        clock = pygame.time.Clock()
        recorded, frame_ms, i, running = [], [], 0, True
        while running and (max_frames is None or i < max_frames):
            for event in pygame.event.get():
                if event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE):
                    running = False
            if script is not None:
                a = int(script(i))
            else:
                pressed = pygame.key.get_pressed()
                a = action_for({word for key, word in KEY_WORDS.items() if pressed[getattr(pygame, key)]}, names)
            t0 = time.perf_counter()
            frame = s.step_native(a)
            frame_ms.append((time.perf_counter() - t0) * 1000.0)
            surf = pygame.surfarray.make_surface(np.ascontiguousarray(frame.transpose(1, 0, 2)))
            screen.blit(pygame.transform.scale(surf, (w * scale, h * scale)), (0, 0))
            fps = 1000.0 / np.mean(frame_ms[-30:])
            screen.blit(font.render(f"{fps:5.1f} FPS  {names[a]}", True, (255, 255, 0)), (8, 8))
            pygame.display.flip()
            if record:
                recorded.append(frame)
            clock.tick(fps_cap)
            i += 1
        pygame.quit()
        stats = s.stats()
    if record and recorded:
        import imageio.v2 as imageio

        with imageio.get_writer(record, fps=30, codec="libx264", quality=8, macro_block_size=2, ffmpeg_log_level="error") as wr:
            for f in recorded:
                wr.append_data(f)
    ms = np.asarray(frame_ms[2:] or frame_ms)
    return {"frames": i, "step_and_decode_ms_p50": round(float(np.percentile(ms, 50)), 2),
            "fps_uncapped": round(1000.0 / float(ms.mean()), 1), "runtime": stats, "recording": record}
