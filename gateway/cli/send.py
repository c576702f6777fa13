"""``cmpp-gateway send``: the command-line client of the gateway's HTTP API (the JSMS contract).

    cmpp-gateway send --url http://127.0.0.1:8080 --app-key KEY --master-secret-env SMS_SECRET \\
        13800138000 --temp-id 1 --param order=A123 [--idempotency-key K] [--wait]

    ... MOBILE --temp-id N [--param k=v ...]    POST /v1/messages
    ... --batch FILE --temp-id N [--param k=v]  POST /v1/messages/batch; FILE ("-": stdin) holds
                                                JSON lines or a JSON list of {mobile, temp_para};
                                                --param values are defaults for every recipient
    ... --code MOBILE --temp-id N               POST /v1/codes
    ... --check MSG_ID CODE                     POST /v1/codes/{msg_id}/valid
    ... --status MSG_ID                         GET  /v1/messages/{msg_id}

It prints the gateway's JSON answer on one line. With ``--wait`` it then polls
``GET /v1/messages/{msg_id}`` for every message sent (or the one named by ``--status``) and
prints one JSON line per status change, until all are final or ``--timeout`` passes.

Exit status: 0 on success (with ``--wait``: every message delivered); 1 when the API refused
the call (its JSMS code and message go to stderr), when a waited-for message ended in another
final status, or when the wait timed out; 2 on a usage error or when the gateway could not be
reached or did not answer as the API does. The master secret travels only in the
Authorization header; it is never printed (prefer ``--master-secret-env``: command lines are
visible to other users of the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

PROG = "cmpp-gateway send"
POLL_CONCURRENCY = 8


class UsageError(Exception):
    """The command line (or a file it names) cannot make a call; exit status 2."""


class BadAnswer(Exception):
    """The server answered, but not with a JSMS JSON object; exit status 2."""


@dataclass
class Call:
    """One API call: its method, path, JSON body and extra headers."""

    method: str
    path: str
    body: dict | None = None
    headers: dict = field(default_factory=dict)


def add_send_command(subparsers) -> argparse.ArgumentParser:
    """Register ``send`` on an argparse ``add_subparsers()`` object."""
    parser = subparsers.add_parser(
        "send", help="send SMS through the gateway's HTTP API (JSMS contract)",
        description="Call the gateway's HTTP API (the JSMS SMS contract) and print its JSON "
                    "answer.", formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("mobile", nargs="?", metavar="MOBILE", help="the recipient's number")
    parser.add_argument("--url", default="http://127.0.0.1:8080",
                        help="the gateway's API (default http://127.0.0.1:8080)")
    parser.add_argument("--app-key", required=True, help="the app's key")
    secret = parser.add_mutually_exclusive_group(required=True)
    secret.add_argument("--master-secret", metavar="SECRET",
                        help="the app's master secret (visible in ps)")
    secret.add_argument("--master-secret-env", metavar="VAR",
                        help="the environment variable holding the master secret")
    parser.add_argument("--temp-id", type=int, metavar="N", help="the template id")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a template parameter (repeatable)")
    parser.add_argument("--idempotency-key", metavar="K",
                        help="a retry with the same key gets the first answer, sends nothing")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--batch", metavar="FILE", help="send to the recipients in FILE")
    what.add_argument("--code", action="store_true", help="send a verification code")
    what.add_argument("--check", nargs=2, metavar=("MSG_ID", "CODE"),
                      help="check a verification code")
    what.add_argument("--status", metavar="MSG_ID", help="show a message's status")
    parser.add_argument("--wait", action="store_true",
                        help="poll until every message is final; print each change")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="how long --wait waits (default 60)")
    parser.add_argument("--interval", type=float, default=0.5, metavar="SECONDS",
                        help="--wait's polling interval (default 0.5)")
    parser.add_argument("--request-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="limit for each HTTP request (default 30)")
    parser.set_defaults(func=lambda args: asyncio.run(send_command(args)))
    return parser


# ----------------------------------------------------------------------------- the command line

def plan(args: argparse.Namespace) -> Call:
    """The call the arguments ask for; UsageError says what is wrong with them."""
    if args.check or args.status is not None:
        flag = "--check" if args.check else "--status"
        for given, name in ((args.mobile, "MOBILE"), (args.temp_id, "--temp-id"),
                            (args.param, "--param"), (args.idempotency_key, "--idempotency-key")):
            if given:
                raise UsageError(f"{name} is not used with {flag}")
        if args.check:
            if args.wait:
                raise UsageError("--wait is not used with --check")
            msg_id, code = args.check
            return Call("POST", f"/v1/codes/{msg_id}/valid", {"code": code})
        return Call("GET", f"/v1/messages/{args.status}")
    if args.temp_id is None:
        raise UsageError("--temp-id is required")
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
    if args.batch is not None:
        if args.mobile:
            raise UsageError("MOBILE is not used with --batch; the file names the recipients")
        defaults = parse_params(args.param)
        recipients = [_with_defaults(r, defaults) for r in read_batch(args.batch)]
        return Call("POST", "/v1/messages/batch",
                    {"temp_id": args.temp_id, "recipients": recipients}, headers)
    if not args.mobile:
        raise UsageError("MOBILE is required")
    if args.code:
        if args.param:
            raise UsageError("--param is not used with --code; the gateway makes the code")
        return Call("POST", "/v1/codes", {"mobile": args.mobile, "temp_id": args.temp_id},
                    headers)
    body = {"mobile": args.mobile, "temp_id": args.temp_id}
    if args.param:
        body["temp_para"] = parse_params(args.param)
    return Call("POST", "/v1/messages", body, headers)


def parse_params(items: list[str]) -> dict[str, str]:
    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--param {item!r}: write NAME=VALUE")
        params[name] = value
    return params


def read_batch(path: str) -> list:
    """The recipients in ``path`` ("-": stdin): a JSON list, or one JSON object a line."""
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"--batch {path}: cannot read it ({error})") from None
    try:
        if text.lstrip().startswith("["):
            recipients = json.loads(text)
        else:
            recipients = [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError as error:
        raise UsageError(f"--batch {path}: not JSON lines or a JSON list ({error})") from None
    if not recipients:
        raise UsageError(f"--batch {path}: no recipients")
    for number, entry in enumerate(recipients, 1):
        if not isinstance(entry, dict):
            raise UsageError(f"--batch {path}: recipient {number} is not an object "
                             '{"mobile": ..., "temp_para": {...}}')
    return recipients


def _with_defaults(recipient: dict, defaults: dict[str, str]) -> dict:
    if not defaults:
        return recipient
    params = recipient.get("temp_para")
    if params is not None and not isinstance(params, dict):
        return recipient                             # the gateway says what is wrong
    return {**recipient, "temp_para": {**defaults, **(params or {})}}


def master_secret(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    if args.master_secret is not None:
        return args.master_secret
    secret = env.get(args.master_secret_env)
    if not secret:
        raise UsageError(f"--master-secret-env: {args.master_secret_env} is not set")
    return secret


def base_url(text: str) -> URL:
    url = URL(text)
    if url.scheme not in ("http", "https") or not url.host:
        raise UsageError(f"--url {text!r}: expected http://HOST:PORT or https://HOST:PORT")
    return url.with_user(None).with_query(None).with_fragment(None)   # no credentials shown


# ----------------------------------------------------------------------------- the calls

async def send_command(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    """Make the call the arguments ask for, print the answer; the exit status."""
    try:
        base = base_url(args.url)
        secret = master_secret(args, os.environ if env is None else env)
        authorization = aiohttp.encode_basic_auth(args.app_key, secret)
        call = plan(args)
    except UnicodeEncodeError:
        return _fail("the app key and master secret must be text (UTF-8)", 2)
    except (UsageError, ValueError) as error:
        return _fail(error, 2)
    timeout = aiohttp.ClientTimeout(total=args.request_timeout)
    try:
        async with aiohttp.ClientSession(headers={"Authorization": authorization},
                                         timeout=timeout) as http:
            status, answer = await request(http, base, call)
            _print(answer)
            if _refused(status, answer):
                return 1
            if not args.wait:
                return 0
            if args.status is not None:
                return await wait_final(http, base, {str(args.status): answer.get("status")},
                                        args.timeout, args.interval, known=True)
            ids = {msg_id: None for msg_id in sent_ids(answer)}
            return await wait_final(http, base, ids, args.timeout, args.interval)
    except BadAnswer as error:
        return _fail(error, 2)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
        return _fail(f"no answer from {base}: {_reason(error)}", 2)


async def request(http: aiohttp.ClientSession, base: URL, call: Call) -> tuple[int, dict]:
    """(HTTP status, JSON object) of one call; BadAnswer when it is not a JSON object."""
    url = base.with_path(base.path.rstrip("/") + call.path, encoded=False)
    async with http.request(call.method, url, json=call.body, headers=call.headers,
                            allow_redirects=False) as response:     # the secret stays here
        text = await response.text(errors="replace")
    try:
        answer = json.loads(text)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise BadAnswer(f"HTTP {response.status} from {url.with_query(None)} is not a JSMS "
                        f"answer: {text[:200]!r}")
    return response.status, answer


def sent_ids(answer: dict) -> list[str]:
    """The msg_ids of the messages a send accepted (a batch's refusals are not sent)."""
    if "recipients" in answer:
        return [str(r["msg_id"]) for r in answer["recipients"] if "error_code" not in r]
    return [str(answer["msg_id"])] if "msg_id" in answer else []


async def wait_final(http: aiohttp.ClientSession, base: URL, statuses: dict[str, str | None],
                     timeout: float, interval: float, known: bool = False) -> int:
    """Poll each message until it is final, printing each change; 0 when all are delivered.

    ``statuses`` maps msg_id to the status already printed (None: nothing yet)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    final: dict[str, str] = {}
    limit = asyncio.Semaphore(POLL_CONCURRENCY)

    async def view(msg_id: str) -> tuple[int, dict]:
        async with limit:
            return await request(http, base, Call("GET", f"/v1/messages/{msg_id}"))

    while True:
        waiting = [m for m in statuses if m not in final]
        for msg_id, (status, answer) in zip(waiting, await asyncio.gather(*map(view, waiting))):
            if _refused(status, answer, print_answer=True):
                return 1
            if answer.get("status") != statuses[msg_id] or not known:
                statuses[msg_id] = answer.get("status")
                _print({"msg_id": msg_id, "status": answer.get("status"),
                        "stat": answer.get("stat"), "final": answer.get("final"),
                        "status_at": answer.get("status_at")})
            if answer.get("final"):
                final[msg_id] = answer.get("status")
        known = True
        if len(final) == len(statuses):
            break
        if loop.time() >= deadline:
            return _fail(f"{len(statuses) - len(final)} message(s) still not final after "
                         f"{timeout:g} s", 1)
        await asyncio.sleep(max(0.0, min(interval, deadline - loop.time())))
    undelivered = {m: s for m, s in final.items() if s != "delivered"}
    if undelivered:
        shown = ", ".join(f"{m} {s}" for m, s in list(undelivered.items())[:10])
        return _fail(f"{len(undelivered)} message(s) not delivered: {shown}", 1)
    return 0


def _refused(status: int, answer: dict, print_answer: bool = False) -> bool:
    """True (the JSMS code and message on stderr) when the answer is a refusal."""
    error = answer.get("error")
    if status == 200 and error is None and answer.get("is_valid") is not False:
        return False
    if print_answer:
        _print(answer)
    if isinstance(error, dict):
        _fail(f"refused: {error.get('code')} {error.get('message')} (HTTP {status})", 1)
    else:
        _fail(f"refused: HTTP {status}", 1)
    return True


def _reason(error: BaseException) -> str:
    if isinstance(error, asyncio.TimeoutError):
        return "timed out"
    return str(error) or type(error).__name__


def _print(value) -> None:
    print(json.dumps(value, ensure_ascii=False), flush=True)


def _fail(message, status: int) -> int:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)
    return status
