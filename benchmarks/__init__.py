"""Benchmark harness for sitewatch's change detectors on labelled image pairs (see benchmarks/README.md)."""
