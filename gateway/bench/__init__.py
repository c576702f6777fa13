"""The load tool and the benchmarks.

``load`` is ``cmpp-gateway bench`` (also ``python -m gateway.bench``): a load test of any CMPP
2.0 server, or of the built-in simulator, through its own lean client (``wire``), with
``report`` printing its figures. The other
modules are benchmarks, each run as ``python -m gateway.bench.<name>`` with its own baseline
measured in the same run: ``codec``, ``session``, ``pool``, ``pipeline``, ``http``, ``logs``;
``held`` (the pipeline with many unmatched reports held, and after a restart); ``soak`` (an
hour at a steady rate with faults mixed in, judged by ``trend``: does anything keep growing);
``priority`` (verification codes while a notification backlog drains, against main's code in
a temporary worktree); ``tool`` (the load tool itself against the simulator it drives, in
CPU per SUBMIT); ``api`` (the HTTP API's own CPU per message, in one process, against
another tree's); and ``sim`` (the simulator's own CPU per message, against another tree's).

Offers: add_bench_command.
"""

from .load import add_bench_command

__all__ = ["add_bench_command"]
