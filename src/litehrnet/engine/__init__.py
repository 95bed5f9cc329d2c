"""Training: the loss, the learning-rate schedule, checkpoints that resume exactly, and the training loop."""
