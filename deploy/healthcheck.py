"""The container's health check: asks the broker's standard gRPC health service (grpc.health.v1.Health).

Exit 0 when the broker answers SERVING, 1 otherwise, with one line saying why. It uses only grpcio and
grpcio-health-checking, which the broker already depends on, so the image needs no extra binary. With TLS
(Kubernetes' own gRPC probe has none) it verifies the broker against --tls-ca and, for mTLS, presents
--tls-cert/--tls-key.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Check the broker's gRPC health service.")
    parser.add_argument("--address", default="localhost:50051", help="host:port of the broker")
    parser.add_argument("--service", default="", help='service name to check ("" is the whole server)')
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds")
    parser.add_argument("--tls-ca", type=Path, help="CA certificate(s) the broker's certificate chains to")
    parser.add_argument("--tls-cert", type=Path, help="client certificate, when the broker demands one")
    parser.add_argument("--tls-key", type=Path, help="private key of --tls-cert")
    return parser.parse_args(argv)


def _channel(args: argparse.Namespace) -> grpc.Channel:
    if args.tls_ca is None:
        return grpc.insecure_channel(args.address)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=args.tls_ca.read_bytes(),
        private_key=args.tls_key.read_bytes() if args.tls_key else None,
        certificate_chain=args.tls_cert.read_bytes() if args.tls_cert else None,
    )
    return grpc.secure_channel(args.address, credentials)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        with _channel(args) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            answer = stub.Check(health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout)
    except grpc.RpcError as exc:
        print(f"unhealthy: {exc.code().name} from {args.address}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"unhealthy: cannot read {exc.filename} ({exc.strerror})", file=sys.stderr)
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    if answer.status != health_pb2.HealthCheckResponse.SERVING:
        print(f"unhealthy: {status}", file=sys.stderr)
        return 1
    print(status)
    return 0


if __name__ == "__main__":
    sys.exit(main())
