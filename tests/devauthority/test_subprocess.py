from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import httpx

from .conftest import PPS_SCOPE, REDIRECT_URI, SUPPLIER_ORG
from .helpers import Caller, DevClient, LoginFlow

LOGIN_IDENTITY = f"helseid://scopes/identity/pid {PPS_SCOPE}"

REPO_ROOT = Path(__file__).resolve().parents[2]


async def test_module_prints_its_issuer_and_serves_tokens_when_run_as_a_subprocess(
    tmp_path: Path, multi_client: DevClient
) -> None:
    clients = tmp_path / "clients.json"
    clients.write_text(
        json.dumps(
            [
                {
                    "client_id": multi_client.client_id,
                    "jwks": {"keys": [multi_client.key.as_dict(private=False)]},
                    "tenancy": "multi",
                    "organization_number": SUPPLIER_ORG,
                    "allowed_scopes": [PPS_SCOPE],
                }
            ]
        )
    )
    with (tmp_path / "stderr.log").open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "devauthority",
            "--port",
            "0",
            "--clients",
            str(clients),
            "--token-lifetime",
            "7",
            cwd=REPO_ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
        try:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
            started = json.loads(line)
            assert started["issuer"] == f"http://127.0.0.1:{started['port']}"

            async with httpx.AsyncClient(timeout=10) as http:
                caller = Caller(http=http, issuer=started["issuer"])
                response = await caller.request_token(multi_client, scope=PPS_SCOPE)
                assert response.status_code == 200, response.text
                assert response.json()["expires_in"] == 7
                _, claims = await caller.verified_claims(response.json()["access_token"])
                assert claims["iss"] == started["issuer"]
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            returncode = await asyncio.wait_for(process.wait(), timeout=30)

    assert returncode == 0, (tmp_path / "stderr.log").read_text()


async def test_module_logs_in_a_test_user_from_its_file_when_run_as_a_subprocess(
    tmp_path: Path, login_client: DevClient
) -> None:
    clients, users = tmp_path / "clients.json", tmp_path / "users.json"
    clients.write_text(
        json.dumps(
            {
                "clients": [
                    {
                        "client_id": login_client.client_id,
                        "jwks": {"keys": [login_client.key.as_dict(private=False)]},
                        "tenancy": "single",
                        "organization_number": SUPPLIER_ORG,
                        "allowed_scopes": [PPS_SCOPE],
                        "grant_types": ["authorization_code", "refresh_token"],
                        "redirect_uris": [REDIRECT_URI],
                    }
                ]
            }
        )
    )
    users.write_text(
        json.dumps([{"id": "lege", "pid": "13116900216", "given_name": "Lege", "family_name": "Legesen"}])
    )
    with (tmp_path / "stderr.log").open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "devauthority",
            "--clients",
            str(clients),
            "--test-users",
            str(users),
            "--refresh-token-lifetime",
            "120",
            cwd=REPO_ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
        try:
            assert process.stdout is not None
            started = json.loads(await asyncio.wait_for(process.stdout.readline(), timeout=30))
            async with httpx.AsyncClient(timeout=10) as http:
                caller = Caller(http=http, issuer=started["issuer"])
                flow = LoginFlow(caller=caller, client=login_client, redirect_uri=REDIRECT_URI)
                code, pushed = await flow.login(
                    scope=f"openid offline_access {LOGIN_IDENTITY}", login_hint="lege"
                )
                response = await flow.redeem(code, pushed.verifier)
                assert response.status_code == 200, response.text
                assert 110 <= response.json()["rt_expires_in"] <= 120
                _, claims = await caller.verified_claims(response.json()["id_token"])
                assert claims["helseid://claims/identity/pid"] == "13116900216"
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            returncode = await asyncio.wait_for(process.wait(), timeout=30)

    assert returncode == 0, (tmp_path / "stderr.log").read_text()
