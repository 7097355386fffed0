"""User sessions: login through the broker (PAR + PKCE), single-audience tokens per target from the
session's refresh token, token exchange, and the session's end."""
