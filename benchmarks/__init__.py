"""smtpsec benchmarks: round trips, wall time and memory against smtplib and aiosmtplib.

Run ``python benchmarks/run.py --help``; see benchmarks/README.md. Nothing here
is a test: timings are reported, never asserted.
"""
