"""Benchmarks shipped as commands: latency over HTTP, replay on real data, bias correction."""
