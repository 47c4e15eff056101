"""OAuth 2.1 for MCP servers, through the SDK's provider (PKCE S256, discovery, dynamic
client registration, resource indicators, scope step-up), with the sign-in step done
without a browser: the authorization URL is fetched and its redirect read. That works
where the authorization server approves with no one there (a test server, a client it
already trusts); anywhere else it stops with a clear error instead of opening a page."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    import httpx2
    from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
    from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

REDIRECT_URI = "http://127.0.0.1:8976/callback"  # never listened on: the redirect is read, not followed
REDIRECTS = (301, 302, 303, 307, 308)


class SignInNeeded(Exception):
    """The authorization server wants a person to sign in, in a browser."""


@dataclass
class MemoryTokens:
    """Tokens and the registered client, for one run (the probe keeps nothing)."""

    tokens: OAuthToken | None = None
    client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


@dataclass
class HeadlessSignIn:
    """The redirect and callback handlers the SDK asks for, with no browser."""

    http: httpx2.AsyncClient
    result: dict[str, str] = field(default_factory=dict)

    async def redirect(self, authorization_url: str) -> None:
        response = await self.http.get(authorization_url, follow_redirects=False)
        location = response.headers.get("location")
        if response.status_code not in REDIRECTS or not location:
            raise SignInNeeded(
                f"the authorization server answered {response.status_code} instead of redirecting back: "
                "it wants a person to sign in in a browser, which the probe does not open"
            )
        query = parse_qs(urlsplit(location).query)
        if "error" in query:
            raise SignInNeeded(f"the authorization server refused: {query['error'][0]}")
        self.result = {k: v[0] for k, v in query.items() if k in ("code", "state", "iss")}

    async def callback(self) -> AuthorizationCodeResult:
        from mcp.client.auth import AuthorizationCodeResult

        if "code" not in self.result:
            raise SignInNeeded("the authorization server's redirect carried no code")
        return AuthorizationCodeResult(**self.result)


def provider(
    url: str,
    http: httpx2.AsyncClient,
    context: dict[str, Any] | None = None,
    client_metadata_url: str | None = None,
) -> OAuthClientProvider:
    """An OAuth provider for `url`. `context` may name a client registered beforehand
    (`client_id`, `client_secret`, `token_endpoint_auth_method`), as the conformance
    suite's MCP_CONFORMANCE_CONTEXT does. Otherwise, where the authorization server takes
    URL client ids and `client_metadata_url` (an https URL serving this client's metadata
    document) is given, that is the client id; else the client registers itself."""
    from mcp.client.auth import OAuthClientProvider
    from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata

    metadata = OAuthClientMetadata(
        client_name="HermitCrab",
        redirect_uris=[REDIRECT_URI],  # type: ignore[list-item]
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
    )
    storage = MemoryTokens()
    context = context or {}
    if context.get("client_id"):
        storage.client = OAuthClientInformationFull(
            client_id=str(context["client_id"]),
            client_secret=context.get("client_secret"),
            token_endpoint_auth_method=context.get("token_endpoint_auth_method")
            or ("client_secret_basic" if context.get("client_secret") else "none"),
            redirect_uris=[REDIRECT_URI],  # type: ignore[list-item]
            grant_types=["authorization_code", "refresh_token"],
        )
    sign_in = HeadlessSignIn(http)
    return OAuthClientProvider(
        server_url=url,
        client_metadata=metadata,
        storage=storage,
        redirect_handler=sign_in.redirect,
        callback_handler=sign_in.callback,
        client_metadata_url=client_metadata_url,
    )


def conformance_context(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
