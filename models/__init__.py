"""PyTorch models: the next-frame diffusion transformer, its flow-matching objective and its samplers."""
