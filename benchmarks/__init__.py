"""Benchmark scripts (run each by its path) and the result file they share."""
