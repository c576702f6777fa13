"""An ISMG simulator that speaks real CMPP 2.0 over TCP: logins, SUBMIT_RESPs with Msg_Ids,
status reports, MO, and faults to inject. Tests, the demo and the load tool use it; a subclass
scripts an ISMG of its own by overriding its ``on_...`` event methods, and ``HeldDelivers``
keeps what it owes across its restart. In strict mode it refuses what a strict center refuses
(``strict``: the checks, and the spec's code for each).

Offers: Simulator, SimulatorConfig, Account, Faults, ReceivedSubmit, SentReport,
IsmgConnection, HeldDelivers.
"""

from .config import Account, Faults, ReceivedSubmit, SentReport, SimulatorConfig
from .connection import IsmgConnection
from .held import HeldDelivers
from .simulator import Simulator

__all__ = ["Account", "Faults", "HeldDelivers", "IsmgConnection", "ReceivedSubmit",
           "SentReport", "Simulator", "SimulatorConfig"]
