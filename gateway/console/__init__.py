"""The operator's web console, served by the daemon on its own address (``[console]
listen``; off by default, never on the API's port).

Server-rendered pages (aiohttp, jinja2 through aiohttp-jinja2), with their templates, style
sheet, small script and charts (inline SVG drawn on the server) all in this package: nothing
is fetched from elsewhere. Sections: the overview of channels and traffic, applications
(seed 004), the review queue of templates and signatures, users and their numbers per
channel (seed 000's file upload, search, delete), messages (search, one message, a test
message), and the audit trail.

``server`` builds the application and serves it; ``security`` is the guard (sessions, CSRF,
roles, headers); ``sessions`` and ``auth`` hold the sessions, passwords and the login
limiter; ``pages/`` the sections; ``forms``, ``handset``, ``charts`` and ``rates`` what the
pages draw with; ``services`` what the daemon hands the console (``Services``).

Offers: ConsoleServer, Services, SendRefused, UploadRefused, hash_password, password_problem,
ROLES.
"""

from gateway.store import ROLES

from .auth import hash_password, password_problem
from .server import ConsoleServer
from .services import SendRefused, Services, UploadRefused

__all__ = ["ROLES", "ConsoleServer", "SendRefused", "Services", "UploadRefused",
           "hash_password", "password_problem"]
