"""Login arithmetic: the CONNECT timestamp and the two MD5 authenticators (reference §6)."""

from __future__ import annotations

import hashlib
from datetime import datetime


def timestamp(moment: datetime) -> int:
    """The CONNECT Timestamp: MMDDHHMMSS of ``moment`` as a decimal integer.

    The ISMG compares it with its own clock (China time in practice), so pass a datetime in
    the zone the SMS center expects.
    """
    return int(moment.strftime("%m%d%H%M%S"))


def authenticator_source(source_addr: str, secret: str | bytes, timestamp: int) -> bytes:
    """AuthenticatorSource = MD5(Source_Addr + 9 zero bytes + secret + "%010d" % timestamp).

    Source_Addr is hashed as given (SMSGate's reading; it equals gocmpp's for the usual 6-digit
    SP_Id). The timestamp string keeps its leading zero in January to September.
    Raises ValueError for a timestamp that is not 0..9999999999.
    """
    if not 0 <= timestamp <= 9_999_999_999:
        raise ValueError(f"timestamp {timestamp} is not a 10-digit MMDDHHMMSS value")
    digest = hashlib.md5()
    digest.update(source_addr.encode("ascii"))
    digest.update(bytes(9))
    digest.update(_secret_bytes(secret))
    digest.update(b"%010d" % timestamp)
    return digest.digest()


def authenticator_ismg(status: int, authenticator_source: bytes, secret: str | bytes) -> bytes:
    """AuthenticatorISMG = MD5(1-byte Status + AuthenticatorSource + secret), the 2.0 form.

    (CMPP 3.0 hashes a 4-byte Status; SMSGate's server does so on 2.0 links too.)
    """
    if not 0 <= status <= 255:
        raise ValueError(f"status {status} does not fit the 1-byte CMPP 2.0 Status")
    return hashlib.md5(bytes([status]) + authenticator_source + _secret_bytes(secret)).digest()


def _secret_bytes(secret: str | bytes) -> bytes:
    return secret if isinstance(secret, bytes) else secret.encode("utf-8")
