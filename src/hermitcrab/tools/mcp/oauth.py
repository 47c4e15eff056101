"""OAuth 2.1 for MCP servers, through the SDK's provider (PKCE S256, discovery, dynamic
client registration, resource indicators, refresh, scope step-up).

Three ways to sign in:
- the probe's, without a browser: the authorization URL is fetched and its redirect read.
  That works where the authorization server approves with no one there (a test server, a
  client it already trusts); anywhere else it stops with a clear error;
- `hermitcrab mcp login NAME`'s, for a person: the URL is shown (and opened in a browser)
  and the redirect comes back to a listener on 127.0.0.1 for as long as it takes;
- the gateway's, which signs in never: it uses and refreshes what `mcp login` stored (in
  the secrets store, through `StoredTokens`) and, where the server wants a new sign-in,
  says to run `hermitcrab mcp login NAME`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
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


@dataclass
class StoredTokens:
    """The SDK's token storage over a record kept elsewhere: `load` and `save` read and
    write {"tokens": ..., "client": ...} (the gateway and `mcp login` hand in the secrets
    store's). Tokens are kept with `expires_at`, the time they end, not how long they last."""

    load: Callable[[], dict[str, Any] | None]
    save: Callable[[dict[str, Any]], None]

    def _record(self) -> dict[str, Any]:
        return dict(self.load() or {})

    async def get_tokens(self) -> OAuthToken | None:
        from mcp.shared.auth import OAuthToken

        tokens = self._record().get("tokens")
        if not tokens:
            return None
        return OAuthToken.model_validate({k: v for k, v in tokens.items() if k != "expires_at"})

    async def set_tokens(self, tokens: OAuthToken) -> None:
        record = self._record()
        data = tokens.model_dump(mode="json", exclude_none=True)
        if tokens.expires_in is not None:
            data["expires_at"] = time.time() + tokens.expires_in
        record["tokens"] = data
        self.save(record)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        from mcp.shared.auth import OAuthClientInformationFull

        client = self._record().get("client")
        return OAuthClientInformationFull.model_validate(client) if client else None

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        record = self._record()
        record["client"] = client_info.model_dump(mode="json", exclude_none=True)
        self.save(record)

    def expires_at(self) -> float | None:
        tokens = self._record().get("tokens") or {}
        value = tokens.get("expires_at")
        return float(value) if isinstance(value, int | float) else None


class LoopbackSignIn:
    """A person's sign-in: the authorization URL goes to `show` (which prints it, and may
    open a browser); the authorization server sends the browser back to a listener on
    127.0.0.1, which takes the code and says the page can be closed."""

    def __init__(self, show: Callable[[str], Awaitable[None] | None], timeout: float) -> None:
        self.show, self.timeout = show, timeout
        self.result: asyncio.Future[dict[str, str]] | None = None
        self._server: asyncio.Server | None = None
        self.redirect_uri = ""

    async def __aenter__(self) -> LoopbackSignIn:
        self.result = asyncio.get_running_loop().create_future()
        self._server = await asyncio.start_server(self._arrived, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.redirect_uri = f"http://127.0.0.1:{port}/callback"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _arrived(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            target = line.decode("latin-1").split(" ")[1] if line.count(b" ") >= 2 else ""
            query = {k: v[0] for k, v in parse_qs(urlsplit(target).query).items()}
            if urlsplit(target).path != "/callback" or not ({"code", "error"} & query.keys()):
                body, status = "Not the sign-in callback.", "404 Not Found"
            else:
                failed = query.get("error")
                body = f"Sign-in refused: {failed}." if failed else "Signed in. You can close this page."
                status = "200 OK"
                if self.result is not None and not self.result.done():
                    self.result.set_result(query)
            payload = body.encode()
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + payload)
            await writer.drain()
        except (OSError, TimeoutError, IndexError):
            pass
        finally:
            writer.close()

    async def redirect(self, authorization_url: str) -> None:
        shown = self.show(authorization_url)
        if shown is not None:
            await shown

    async def callback(self) -> AuthorizationCodeResult:
        from mcp.client.auth import AuthorizationCodeResult

        assert self.result is not None
        try:
            query = await asyncio.wait_for(asyncio.shield(self.result), self.timeout)
        except TimeoutError:
            raise SignInNeeded(f"no sign-in came back within {self.timeout:g} s") from None
        if "error" in query:
            raise SignInNeeded(f"the authorization server refused: {query['error']}")
        return AuthorizationCodeResult(**{k: v for k, v in query.items() if k in ("code", "state", "iss")})


def _metadata(redirect_uri: str) -> Any:
    from mcp.shared.auth import OAuthClientMetadata

    return OAuthClientMetadata(
        client_name="HermitCrab",
        redirect_uris=[redirect_uri],  # type: ignore[list-item]
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
    )


def person_provider(url: str, storage: StoredTokens, sign_in: LoopbackSignIn) -> OAuthClientProvider:
    """For `mcp login`: a person signs in, and what the server grants is stored."""
    from mcp.client.auth import OAuthClientProvider

    return OAuthClientProvider(
        server_url=url,
        client_metadata=_metadata(sign_in.redirect_uri),
        storage=storage,
        redirect_handler=sign_in.redirect,
        callback_handler=sign_in.callback,
    )


def gateway_provider(server: str, url: str, storage: StoredTokens) -> OAuthClientProvider:
    """For the gateway's connection to a configured server: the stored token is used, and
    refreshed when it ends; a new sign-in is a person's to do."""
    from mcp.client.auth import OAuthClientProvider

    async def no_browser(authorization_url: str) -> None:
        raise SignInNeeded(
            f"the MCP server {server} wants a person to sign in: run `hermitcrab mcp login {server}`"
        )

    async def no_code() -> AuthorizationCodeResult:
        raise SignInNeeded(f"run `hermitcrab mcp login {server}`")

    made = OAuthClientProvider(
        server_url=url,
        client_metadata=_metadata(REDIRECT_URI),
        storage=storage,
        redirect_handler=no_browser,
        callback_handler=no_code,
    )
    # The SDK knows when a token ends only for tokens it got itself, in this process; told
    # of a stored one's end, it refreshes that one first rather than send it to be refused.
    made.context.token_expiry_time = storage.expires_at()
    return made


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
    from mcp.shared.auth import OAuthClientInformationFull

    metadata = _metadata(REDIRECT_URI)
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
