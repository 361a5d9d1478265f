"""One training run: set-up and validation, the loop, reference cache, checkpoints, run log, runtime helpers."""
