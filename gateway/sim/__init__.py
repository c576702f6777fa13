"""An ISMG simulator that speaks real CMPP 2.0 over TCP: logins, SUBMIT_RESPs with Msg_Ids,
status reports, MO, and faults to inject. Tests, the demo and the load tool use it.

Offers: Simulator, SimulatorConfig, Account, Faults, ReceivedSubmit, SentReport.
"""

from .simulator import Account, Faults, ReceivedSubmit, SentReport, Simulator, SimulatorConfig

__all__ = ["Account", "Faults", "ReceivedSubmit", "SentReport", "Simulator", "SimulatorConfig"]
