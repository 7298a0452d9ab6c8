"""Benchmarks of the zoo: ``python -m benchmarks`` (see ``benchmarks/README.md``). Nothing here
runs in the test suite."""
