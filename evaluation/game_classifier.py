"""A small CNN that tells the games apart, trained on real frames: its accuracy on generated images says whether
a sample is recognisably the class asked for, and its penultimate features feed the Frechet distance
(evaluation/frechet.py) that stands in for FID on 64x64 game frames.
"""
from __future__ import annotations

import json
import os

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

FORMAT = "nextframe.game_classifier.v1"
FEATURES = 64


class GameClassifier(nn.Module):
    def __init__(self, classes: tuple[str, ...]):
        super().__init__()
        self.classes = tuple(classes)
        c = [3, 32, 64, 96, FEATURES]
        layers = []
        for cin, cout in zip(c[:-1], c[1:]):  # 64 -> 32 -> 16 -> 8 -> 4
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.GroupNorm(8, cout), nn.SiLU()]
        self.net = nn.Sequential(*layers)
        self.fc = nn.Linear(FEATURES, len(classes))

    def stages(self, images_u8: torch.Tensor) -> list[torch.Tensor]:
        """The output of each conv stage (64 -> 32 -> 16 -> 8 -> 4 px)."""
        h, out = images_u8.float() / 127.5 - 1.0, []
        for i in range(0, len(self.net), 3):
            h = self.net[i + 2](self.net[i + 1](self.net[i](h)))
            out.append(h)
        return out

    def features_and_logits(self, images_u8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 [B, 3, H, W] -> (features [B, 32 + 64 + 96 + FEATURES], logits [B, classes]) from one pass. The features
        are every stage's mean over positions: the last stage alone (what the classifier reads) knows the game and
        little else, so two samples of one game sit together there however blurred; the early stages see edges and
        texture, which is where a blurred or broken frame differs."""
        pooled = [h.mean((2, 3)) for h in self.stages(images_u8)]
        return torch.cat(pooled, dim=1), self.fc(pooled[-1])

    def forward(self, images_u8: torch.Tensor) -> torch.Tensor:
        return self.fc(self.stages(images_u8)[-1].mean((2, 3)))


def train_classifier(images: np.ndarray, labels: np.ndarray, classes, steps: int = 600, batch: int = 128,
                     seed: int = 0) -> GameClassifier:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = GameClassifier(classes)
    opt = torch.optim.AdamW(model.parameters(), 2e-3, weight_decay=1e-4)
    for step in range(steps):
        idx = rng.integers(0, len(images), batch)
        x = torch.from_numpy(images[idx])
        # a shifted frame is the same game: small translations keep the features from keying on exact pixels
        dy, dx = (int(v) for v in rng.integers(-3, 4, 2))
        x = torch.roll(x, (dy, dx), (2, 3))
        loss = F.cross_entropy(model(x), torch.from_numpy(labels[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        for g in opt.param_groups:
            g["lr"] = 2e-3 * 0.5 * (1 + np.cos(np.pi * (step + 1) / steps))
    return model.eval()


@torch.no_grad()
def features_and_predictions(model: GameClassifier, images: np.ndarray, batch: int = 256):
    feats, preds = [], []
    for i in range(0, len(images), batch):
        f, logits = model.features_and_logits(torch.from_numpy(np.ascontiguousarray(images[i:i + batch])))
        feats.append(f.numpy().astype(np.float64))
        preds.append(logits.argmax(1).numpy())
    return np.concatenate(feats), np.concatenate(preds)


def save_classifier(model: GameClassifier, path: str) -> None:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path,
              metadata={"format": FORMAT, "classes": json.dumps(list(model.classes))})


def load_classifier(path: str) -> GameClassifier:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"game classifier: file not found ({path})")
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise ValueError(f"game classifier: {path} is not a game classifier (format {meta.get('format')!r})")
        state = {k: f.get_tensor(k) for k in f.keys()}
    model = GameClassifier(tuple(json.loads(meta["classes"])))
    model.load_state_dict(state)
    return model.eval()
