"""The console's credentials: operators' passwords, signed cookie values, and the limit on
failed logins.

Passwords are kept as ``scrypt$N$r$p$salt$hash`` (hashlib.scrypt, a random 16-byte salt per
account, N=2**14, r=8, p=1: about 16 MiB and tens of milliseconds per check). Cookie values
are signed with HMAC-SHA256 under the console's session key. Failed logins are counted per
source address and per existing account over a sliding window; at the limit, further
attempts are refused before any password is checked, until the oldest failure leaves the
window. Memory holds at most ``keys`` sources (the longest quiet are forgotten first) and one
entry per account.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections import OrderedDict, deque

SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}
MAX_PASSWORD = 1024                         # characters; longer is refused before hashing
MIN_PASSWORD = 10
LOGIN_WINDOW = 900.0                        # seconds over which failed logins count


def hash_password(password: str) -> str:
    """The stored form of ``password``."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, **SCRYPT)
    n, r, p = SCRYPT["n"], SCRYPT["r"], SCRYPT["p"]
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    """Whether ``password`` is the one ``stored`` was made from; False for a record that is
    not a scrypt record or a password that is too long. Constant time in the comparison."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt" or len(password) > MAX_PASSWORD:
            return False
        given = _scrypt(password, bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    except ValueError:
        return False
    return hmac.compare_digest(given, bytes.fromhex(digest))


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None."""
    if len(password) < MIN_PASSWORD:
        return f"a password has at least {MIN_PASSWORD} characters"
    if len(password) > MAX_PASSWORD:
        return f"a password has at most {MAX_PASSWORD} characters"
    return None


def _scrypt(password: str, salt: bytes, *, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=128 * r * n * 2, dklen=32)


# A record to check against when the account does not exist, so that an unknown name takes as
# long to refuse as a wrong password.
UNKNOWN_ACCOUNT = hash_password(secrets.token_hex(16))


class Signer:
    """Signs and checks cookie values: ``value.signature`` with an HMAC-SHA256 under ``key``."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def mac(self, purpose: str, value: str) -> str:
        """A MAC of ``value`` for one ``purpose`` (a cookie, a CSRF token), URL-safe."""
        digest = hmac.new(self._key, f"{purpose}\0{value}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def sign(self, purpose: str, value: str) -> str:
        return f"{value}.{self.mac(purpose, value)}"

    def unsign(self, purpose: str, signed: str | None) -> str | None:
        """The value if ``signed`` carries its right signature, else None."""
        if not signed or "." not in signed:
            return None
        value, _, mac = signed.rpartition(".")
        return value if hmac.compare_digest(mac, self.mac(purpose, value)) else None


class FailureCounter:
    """Failures per key over the last ``window`` seconds, up to ``limit`` kept per key and
    ``keys`` keys at once."""

    def __init__(self, limit: int, window: float, keys: int) -> None:
        self.limit, self.window, self.keys = limit, window, keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def wait(self, key: str, now: float) -> float:
        """Seconds until ``key`` may try again; 0 when it may now."""
        failures = self._failures.get(key)
        if failures is None or len(failures) < self.limit:
            return 0.0
        return max(0.0, failures[0] + self.window - now)

    def fail(self, key: str, now: float) -> None:
        failures = self._failures.pop(key, None) or deque(maxlen=self.limit)
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        failures.append(now)
        self._failures[key] = failures                # the most recent at the end
        while len(self._failures) > self.keys:
            self._failures.popitem(last=False)

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)


class LoginLimiter:
    """Failed logins per source address and per existing account."""

    def __init__(self, per_account: int, per_source: int, window: float = LOGIN_WINDOW,
                 keys: int = 10_000) -> None:
        self.sources = FailureCounter(per_source, window, keys)
        self.accounts = FailureCounter(per_account, window, keys)

    def wait(self, source: str, account: str, now: float) -> float:
        """Seconds before this source may try this account; 0 when it may now."""
        return max(self.sources.wait(source, now), self.accounts.wait(account, now))

    def failed(self, source: str, account: str | None, now: float) -> None:
        """A wrong password from ``source``; ``account`` None when no such account exists
        (names that are not accounts are counted only against the source, so that made-up
        names cannot push real accounts' failures out of memory)."""
        self.sources.fail(source, now)
        if account is not None:
            self.accounts.fail(account, now)

    def succeeded(self, account: str) -> None:
        self.accounts.clear(account)
