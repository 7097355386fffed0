"""Pure protocol code: JOSE, client assertions, DPoP proofs, token requests and responses, and the flows.

No I/O, no `async`, no clock reads: instants and jti values are passed in. Modules are named by the RFC
they implement (`rfcNNNN.py`); `helseid.py` is the HelseID profile, `keys.py` the signing keys,
`http.py` the request/response values and `flows.py` the generator flows the `idp/` driver runs.
"""
