"""The pipeline: from the store to the SMS center and back.

``ChannelDispatcher`` takes a channel's accepted messages from the store (its base
``Fetcher``, in ``fetcher``, reads them and hands back what it holds), splits them and submits
them through the channel's pool, and records every segment's outcome.
``ReceiptHandler`` stores the DELIVERs of a channel (status reports and MO parts), acknowledges
each once what it carried is durable (a report once in the channel's ``ReportJournal``, where
the store has one, else once committed), and reassembles long MO. ``CallbackSender`` sends what
the outbox holds to each app's callback URLs (or a message's own), in JSMS's format (``jsms``:
URLs verified with echostr first) or as signed JSON, retried until acknowledged. ``Sweeper``
keeps the store from growing without end: the report timeout, unmatched reports, retention,
idempotency keys. ``SlotKeeper`` shares each channel's connection slots (and so its TPS) among
several gateways on one store.

Offers: ChannelDispatcher, ReceiptHandler, ReportJournal, CallbackSender, SlotKeeper, Sweeper,
mo_subscribers, orphans (journal files of unconfigured channels), sign, verify.
"""

from .callbacks import CallbackSender, mo_subscribers, sign, verify
from .dispatcher import ChannelDispatcher
from .journal import ReportJournal, orphans
from .receipts import ReceiptHandler
from .slots import SlotKeeper
from .sweeper import Sweeper

__all__ = ["CallbackSender", "ChannelDispatcher", "ReceiptHandler", "ReportJournal", "SlotKeeper",
           "Sweeper", "mo_subscribers", "orphans", "sign", "verify"]
