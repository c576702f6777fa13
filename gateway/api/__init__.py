"""The HTTP API applications call: the JSMS SMS contract (see gateway.api.app)."""

from .app import Api, ApiServer, create_app

__all__ = ["Api", "ApiServer", "create_app"]
