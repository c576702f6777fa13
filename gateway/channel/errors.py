"""Typed errors of the gateway's asyncio layer, each carrying the wire code where there is one."""

from __future__ import annotations


class GatewayError(Exception):
    """Base of the errors the gateway's connections and pools raise."""


class LoginFailed(GatewayError):
    """The connection did not log in."""


class ConnectFailed(LoginFailed):
    """TCP connect failed (refused, unreachable, DNS); ``error`` is the OSError."""

    def __init__(self, host: str, port: int, error: OSError) -> None:
        self.error = error
        super().__init__(f"cannot connect to {host}:{port}: {error.strerror or error}")


class LoginTimedOut(LoginFailed):
    """No CONNECT_RESP (or no TCP connection) within the connect timeout."""


# Where an operator should look after a refusal that will not heal, by CONNECT_RESP Status
# (None: the gateway itself refused the center's AuthenticatorISMG, verify_authenticator).
LOGIN_ADVICE = {
    2: "check the account (SP_Id), and that the center allows this machine's address",
    3: "check the account and password, and this machine's clock (a center refuses a "
       "CONNECT Timestamp minutes away from China time)",
    4: "the center does not take CMPP 2.0 (Version 0x20) on this account",
    None: "the center accepted the account and password (Status 0), but many centers compute "
          'AuthenticatorISMG differently or send zeros: verify_authenticator = "warn" on this '
          "channel logs in to such a center",
}


def authenticator_mismatch(all_zero: bool) -> str:
    """The center's AuthenticatorISMG is not the spec's (reference 6.2), in an operator's words."""
    return (f"the center's AuthenticatorISMG{' (all zero)' if all_zero else ''} does not match "
            "the standard computation, MD5(Status + AuthenticatorSource + secret)")


class LoginRefused(LoginFailed):
    """CONNECT_RESP with a non-zero Status (``status`` None: a refused AuthenticatorISMG).
    Its text is the reason and, for a refusal that will not heal, ``advice``: where to look."""

    def __init__(self, status: int | None, reason: str, retryable: bool) -> None:
        self.status, self.reason, self.retryable = status, reason, retryable
        self.advice = None if retryable else LOGIN_ADVICE.get(status)
        super().__init__(f"login refused: {reason}" + (f"; {self.advice}" if self.advice else ""))


class SubmitRejectedError(GatewayError):
    """SUBMIT_RESP with a definitive non-zero Result: never resend."""

    def __init__(self, result: int) -> None:
        self.result = result
        super().__init__(f"SUBMIT rejected with Result {result}")


class SubmitThrottledError(GatewayError):
    """SUBMIT_RESP Result 8 (flow control): back off, then send it again."""

    result = 8

    def __init__(self) -> None:
        super().__init__("SUBMIT refused with Result 8 (flow control)")


class OutcomeUnknown(GatewayError):
    """The SUBMIT was sent but no response came before the connection ended: the ISMG may or
    may not have it. Resending it risks a duplicate; not resending risks a loss.

    ``sends``: how often it went out on that connection; ``timed_out``: how many of those went
    unanswered (all of them when the link was declared dead for want of answers; all but the
    last when the link was lost, closed by the ISMG or the network, cutting the last short)."""

    def __init__(self, reason: str, sends: int = 1, timed_out: int = 0) -> None:
        self.reason, self.sends, self.timed_out = reason, sends, timed_out
        super().__init__(f"no SUBMIT_RESP: {reason}")

    @property
    def cut(self) -> bool:
        """Its last send was cut short by a lost connection (rather than unanswered for T)."""
        return self.timed_out < self.sends


class SendsExhausted(OutcomeUnknown):
    """N sends of one SUBMIT (``max_sends``), on whatever connections, went unanswered: the
    ISMG may well have it, and another send would risk one more copy."""


class ConnectionClosed(GatewayError):
    """The connection is closed (or closing): the request was not sent."""
