"""The HTTP API that applications call, following the JSMS SMS contract: template SMS,
batches, verification codes, templates and signatures, with per-app Basic credentials, IP
whitelists and JSMS's error codes 50000-50041.

``app`` builds the aiohttp application (authentication, errors) and its server with its
limits (``connections``: how many from one address and in all, and how long a client may
take); ``context`` is what every handler shares, ``ids`` how an id is read; ``messages``,
``codes`` and ``templates_signs`` add their routes; ``registry`` and ``rules`` hold the templates,
signatures and sending rules in memory. The API talks to the store, never to a connection.

Offers: Api, ApiServer, create_app.
"""

from .app import ApiServer, create_app
from .context import Api

__all__ = ["Api", "ApiServer", "create_app"]
