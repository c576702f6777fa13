"""``cmpp-gateway console-user add|remove|list``: the operators who may sign in to the console.

    cmpp-gateway console-user add alice --role admin --config /etc/cmpp-gateway.toml
    printf '%s\\n' "$PASSWORD" | cmpp-gateway console-user add bob --role viewer --config ...
    cmpp-gateway console-user list --config /etc/cmpp-gateway.toml
    cmpp-gateway console-user remove bob --config /etc/cmpp-gateway.toml

``add`` asks for the password twice on a terminal, or reads one line from standard input
otherwise (never from the command line, where other users could see it); it has at least 10
characters. Adding an existing name replaces its role and password and signs it out
everywhere. ``viewer`` may look at everything the console shows; ``admin`` may also change
apps, decide reviews, send test messages and reveal numbers. The command writes the store of
the configuration (the daemon may be running) and the audit trail; it exits 0 when done, 1
when there is no store or no such account or the password is refused, 2 when the
configuration does not validate.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
import time

from gateway.console import ROLES, hash_password, password_problem
from gateway.store import AuditNote, ConsoleUser, Store

from .stores import existing_store, open_existing

NAME_CHARACTERS = "letters, digits, _ . @ -"


def add_console_user_command(subparsers) -> None:
    parser = subparsers.add_parser("console-user", help="add, remove or list the operators "
                                                        "of the web console")
    actions = parser.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add an operator, or change one's role and password")
    add.add_argument("name", help=f"1 to 64 {NAME_CHARACTERS}")
    add.add_argument("--role", choices=ROLES, required=True)
    remove = actions.add_parser("remove", help="remove an operator (signed out at once)")
    remove.add_argument("name")
    listing = actions.add_parser("list", help="the operators and their roles")
    for leaf in (add, remove, listing):
        leaf.add_argument("--config", required=True, help="the TOML configuration file")
    parser.set_defaults(func=console_user_main)


def console_user_main(args) -> int:
    store, status = existing_store(args.config)
    if store is None:
        return status
    if args.action == "add":
        if not _valid_name(args.name):
            print(f"{args.name!r} is not a name; use 1 to 64 {NAME_CHARACTERS}")
            return 1
        password = read_password()
        if password is None:
            return 1
        return asyncio.run(_with_store(store, _add, args.name, args.role, password))
    if args.action == "remove":
        return asyncio.run(_with_store(store, _remove, args.name))
    return asyncio.run(_with_store(store, _list))


def _valid_name(name: str) -> bool:
    return 1 <= len(name) <= 64 and all(c.isascii() and (c.isalnum() or c in "_.@-")
                                        for c in name)


def read_password() -> str | None:
    """The new password: asked twice on a terminal, else the first line of stdin. None
    (with the reason printed) when it is refused."""
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("the two passwords differ")
            return None
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    problem = password_problem(password)
    if problem:
        print(problem)
        return None
    return password


def _by() -> str:
    """Who ran the command, for the audit trail."""
    try:
        return f"command line ({getpass.getuser()})"
    except (KeyError, OSError):
        return f"command line (uid {os.getuid()})"


async def _with_store(store: Store, action, *args) -> int:
    if not await open_existing(store):
        return 1
    try:
        return await action(store, *args)
    finally:
        await store.close()


async def _add(store: Store, name: str, role: str, password: str) -> int:
    record = await asyncio.to_thread(hash_password, password)
    new = await store.put_console_user(
        ConsoleUser(name, role, record, time.time()),
        AuditNote(_by(), "console user added" if await store.console_user(name) is None
                  else "console user changed", name, f"role {role}"), time.time())
    print(f"{'added' if new else 'changed'} {name} ({role})" +
          ("" if new else "; its sessions have ended"))
    return 0


async def _remove(store: Store, name: str) -> int:
    if not await store.remove_console_user(name, AuditNote(_by(), "console user removed", name),
                                           time.time()):
        print(f"no console user {name}")
        return 1
    print(f"removed {name}; its sessions have ended")
    return 0


async def _list(store: Store) -> int:
    users = await store.console_users()
    for user in users:
        print(f"{user.name}\t{user.role}")
    if not users:
        print("no console user yet; add one with: cmpp-gateway console-user add NAME "
              "--role admin --config FILE")
    return 0
