"""Log-line benchmark: what masking phone numbers costs a log line, against formatting it.

    python -m gateway.bench.logs [--rounds 9] [--repeat 2000]

Every log line goes through the redactor (secrets, then ``mask_phone_numbers``) and the logfmt
formatter (which escapes control characters). On a corpus of the daemon's typical lines, most
without a number, it times, interleaved in every round so that all see the same machine noise:

- format: ``LogfmtFormatter.format`` of the record alone (the baseline: a line's least cost);
- mask: ``mask_phone_numbers`` of the message;
- previous mask: the single regular expression it replaced, which knew neither ``0086`` nor
  spaces or dashes inside a number (a reference, not a target);
- whole line: the redactor (two secrets) and the formatter, as a handler runs them.

It prints the median microseconds per line of each over the rounds, and mask / format.
"""

from __future__ import annotations

import argparse
import logging
import re
import statistics
import time

from gateway.ops import LogfmtFormatter, Redactor, mask_phone_numbers

CORPUS = (
    "cmcc: SUBMIT_RESP seq 123456 msg_id 12878564852733378560 result 0 on cmcc#1",
    "POST /v1/messages: 200",
    "POST /v1/messages/batch: 403, JSMS 50031",
    "callback status-42-shop delivered (attempt 1)",
    "cmcc: MO from 8613800138000 to 10690001, 1 part(s)",
    "gateway started with 1 channel(s)",
    "cmcc#2: logged in to 10.1.2.3:7890 as 900001 (window 16)",
    "3 message(s) had no status report within 259200 s: unknown",
    "GET /v1/messages/+86 138 0013 8000: 403, JSMS 50026",
    "API client 192.0.2.7: bad HTTP request (LineTooLong 400)",
)
PREVIOUS = re.compile(r"(?<!\d)(\+?86)?(1[3-9]\d)(\d{4})(\d{4})(?!\d)")


def previous_mask(text: str) -> str:
    return PREVIOUS.sub(lambda m: f"{m.group(1) or ''}{m.group(2)}****{m.group(4)}", text)


def records() -> list[logging.LogRecord]:
    return [logging.LogRecord("cmpp_gateway.pool", logging.INFO, "", 0, line, (), None)
            for line in CORPUS]


def per_line(work, repeat: int) -> float:
    """Microseconds per corpus line of ``work(line_index)``, over ``repeat`` passes."""
    started = time.perf_counter()
    for _ in range(repeat):
        for index in range(len(CORPUS)):
            work(index)
    return (time.perf_counter() - started) / (repeat * len(CORPUS)) * 1e6


def candidates() -> dict:
    formatter = LogfmtFormatter()
    redactor = Redactor(["pw-Kx81-unmistakable", "ms-Qv27-unmistakable"])
    formatted = records()

    def whole_line(index: int) -> str:
        record = logging.LogRecord("cmpp_gateway.pool", logging.INFO, "", 0, CORPUS[index], (),
                                   None)
        redactor.filter(record)
        return formatter.format(record)
    return {"format": lambda i: formatter.format(formatted[i]),
            "mask": lambda i: mask_phone_numbers(CORPUS[i]),
            "previous mask": lambda i: previous_mask(CORPUS[i]),
            "whole line": whole_line}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds; medians")
    parser.add_argument("--repeat", type=int, default=2000, help="passes over the corpus a round")
    args = parser.parse_args(argv)
    works = candidates()
    times: dict[str, list[float]] = {name: [] for name in works}
    for _ in range(args.rounds):
        for name, work in works.items():
            times[name].append(per_line(work, args.repeat))
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"{len(CORPUS)} typical lines, {args.rounds} rounds of {args.repeat} passes; "
          "median microseconds per line:")
    for name, value in medians.items():
        print(f"  {name:<14} {value:6.2f} us")
    print(f"  mask / format  {medians['mask'] / medians['format']:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
