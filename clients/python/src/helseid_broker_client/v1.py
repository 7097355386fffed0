"""The generated messages and stubs of ``broker.v1`` (TokenBrokerService), under stable names.

    from helseid_broker_client import v1
    stub = v1.TokenBrokerServiceStub(channel)
    stub.GetToken(v1.GetTokenRequest(tenant="demo", target="demo-api"))
"""

from ._gen.broker.v1.token_broker_service_pb2 import *  # noqa: F403
from ._gen.broker.v1.token_broker_service_pb2_grpc import TokenBrokerServiceStub  # noqa: F401
