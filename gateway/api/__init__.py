"""The HTTP API that applications call, following the JSMS SMS contract: template SMS,
batches, verification codes, templates and signatures, users bound to numbers per channel,
with per-app Basic credentials, IP whitelists and JSMS's error codes 50000-50041.

``app`` builds the aiohttp application (authentication, errors) and its server with its
limits (``connections``: how many from one address and in all, and how long a client may
take); ``context`` is what every handler shares, ``ids`` how an id is read,
``idempotency`` what an Idempotency-Key does; ``messages``, ``codes``, ``templates_signs``
and ``users`` add their routes (``sign_form`` reads and checks a signature's form,
``uploads`` the users of an upload); ``registry`` and ``rules`` hold the templates, signatures and
sending rules in memory (``recent``: the repeat rule's compact memory). The API talks to
the store, never to a connection.

Offers: Api, ApiServer, create_app, ApiError, send_message (one template message without
HTTP, checked and stored as ``POST /v1/messages`` does it: the console's test message), and
upload_users (a users file read, checked and stored as ``POST /v1/users`` does it: the
console's upload); RecentKeys (the repeat rule's memory, for its benchmark).
"""

from .app import ApiServer, create_app
from .context import Api
from .errors import ApiError
from .messages import send_message
from .recent import RecentKeys
from .users import upload_users

__all__ = ["Api", "ApiError", "ApiServer", "RecentKeys", "create_app", "send_message",
           "upload_users"]
