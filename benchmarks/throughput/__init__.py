"""Modules of benchmarks/train_throughput.py: set-up (shapes, data, FLOP counts), workers, summary."""
