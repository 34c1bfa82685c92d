"""Reaching a server: endpoints and redaction, the transport, the WebSocket session, the HTTP API client."""
