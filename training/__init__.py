"""Training: configs as data, the trainer loop, safetensors checkpoints, JSON-lines logs and a loss plot."""
