"""Benchmarks of the run-job workflow on the local stack: `python -m bench <name>` (see bench/README.md).

Benchmarks, not tests: each prints medians and ratios measured side by side in one run, and
writes its raw figures to bench/results/<name>.json next to the machine they ran on.
"""
