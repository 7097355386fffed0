"""HelseID token broker: cached, DPoP-bound HelseID access tokens for every service, over gRPC."""

__version__ = "0.1.0"
