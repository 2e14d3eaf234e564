"""The collector's HubOAuth: tokens it has no cached answer about go through a TokenGate."""

from __future__ import annotations

import hashlib
from typing import Any

from jupyterhub.services.auth import HubOAuth

from .token_gate import Model, TokenGate


class GatedHubOAuth(HubOAuth):  # type: ignore[misc]
    """HubOAuth whose questions about tokens (a header's, or the OAuth cookie's) pass a gate.

    The hub's answers about known tokens are cached as HubAuth caches them (per token and
    session); a token the hub refused is remembered by the gate instead, bounded, and never
    in HubAuth's own cache, which keeps every answer for its whole age without a bound.
    """

    gate: TokenGate

    def user_for_token(
        self, token: str, use_cache: bool = True, session_id: str = "", *, sync: bool = True
    ) -> Any:
        """Return the owner of `token` (awaitable unless `sync`), asking the hub through the
        gate unless the answer is cached; a blocking call (`sync`) is HubAuth's own."""
        if sync or not use_cache:
            return super().user_for_token(token, use_cache, session_id, sync=sync)
        return self._gated(token, session_id)

    async def _gated(self, token: str, session_id: str) -> Model:
        # HubAuth's key, so that its cache and this one are the same
        digest = hashlib.sha256(token.encode("utf8", "replace")).hexdigest()
        key = f"token:{session_id}:{digest}"
        cached: Model = self.cache.get(key)
        if cached is not None:
            return cached

        def lookup() -> Any:
            return super(GatedHubOAuth, self).user_for_token(
                token, use_cache=False, session_id=session_id, sync=False
            )

        model = await self.gate.ask(token, lookup)
        if model is not None:
            self.cache[key] = model
        return model
