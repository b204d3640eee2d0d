"""nextframe.distill: step distillation of the next-frame model (consistency distillation, f-distill)."""
