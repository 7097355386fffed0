"""The trust-boundary suite of issue 7: real broker processes or servers, real Redis, real STS processes.

Each test prints what it counted, so a run with `-s` shows the figures the README and closing note quote.
"""
