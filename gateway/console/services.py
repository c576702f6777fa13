"""What the console needs from the rest of the daemon, handed over by ``gateway.daemon``.

The console sits beside the API and the pipeline: it reads and writes the store, reads the
apps, the metrics and the pools' state, and for what only the API knows how to do (sending a
message the way ``POST /v1/messages`` does, uploading a users file the way ``POST /v1/users``
does, taking a review into account at once) it calls the functions the daemon gives it here.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gateway.config import Config
from gateway.ops import Metrics
from gateway.store import AppDirectory, Store


class ApiRefused(Exception):
    """What the API refused: ``code`` is the JSMS code, ``message`` its words, as the API
    would answer them."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code, self.message = code, message


class SendRefused(ApiRefused):
    """A test message the API's rules refuse, as ``POST /v1/messages`` would."""


class UploadRefused(ApiRefused):
    """A users file refused whole, storing nothing, as ``POST /v1/users`` would."""


@dataclass(frozen=True)
class Services:
    """``pools()`` gives every channel's ChannelStatus; ``apps_changed()`` reads the apps
    again after the console changed one; ``reviews_changed()`` tells the API a review was
    decided; ``send(app, template_id, mobile, params)`` sends one template message and returns
    its id, or raises SendRefused; ``upload_users(app, data, filename, content_type)`` stores
    the users of a CSV or XLSX file and returns ``POST /v1/users``'s answer for it as a dict,
    or raises UploadRefused."""

    config: Config
    store: Store
    apps: AppDirectory
    metrics: Metrics
    pools: Callable[[], list]
    apps_changed: Callable[[], Awaitable[None]]
    reviews_changed: Callable[[], None]
    send: Callable[[str, int, str, dict], Awaitable[int]]
    upload_users: Callable[[str, bytes | bytearray, str, str], Awaitable[dict]]
    clock: Callable[[], float] = field(default=time.time)
    # An app's jsms callback URLs and their echostr checks (CallbackSender.url_checks).
    callback_checks: Callable[[str], list[dict]] = field(default=lambda app: [])
