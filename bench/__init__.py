"""`python -m bench`: throughput and latency of the broker's cache-hit paths against the framework's ceiling.

Everything runs on loopback in a temporary directory: a dev authority, a Redis server, the broker (with
`workers` processes sharing the port) and the client processes that load it. See bench/README.md.
"""
