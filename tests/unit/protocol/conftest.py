from __future__ import annotations

import pytest

from broker.model import SigningKey
from broker.protocol import keys


# Session scope: key generation, RSA above all, is the slowest thing these tests do.
@pytest.fixture(scope="session")
def es256_key() -> SigningKey:
    return keys.generate_signing_key("ES256")


@pytest.fixture(scope="session")
def es512_key() -> SigningKey:
    return keys.generate_signing_key("ES512")


@pytest.fixture(scope="session")
def ps256_key() -> SigningKey:
    return keys.generate_signing_key("PS256")


@pytest.fixture(scope="session")
def dpop_key() -> SigningKey:
    return keys.generate_signing_key("ES256", kid="dpop-1")
