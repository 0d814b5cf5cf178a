"""The exit codes of the ``nrnn`` command, defined once, and the error of the machinery.

=====  ======================================================================================
0      success
1      a run or a command failed in a way not listed here (Python's own code for a crash)
2      usage: bad arguments or configuration
3      ``nrnn verify``: every module ran, and a claim does not hold (a finding, not an error)
4      infrastructure: the cluster or the store failed, not a claim (:class:`InfrastructureError`)
130    interrupted by Ctrl-C (SIGINT), 143 by SIGTERM (128 + the signal number)
=====  ======================================================================================
"""

from __future__ import annotations

USAGE = 2
CLAIM_FAILED = 3
INFRASTRUCTURE = 4


class InfrastructureError(RuntimeError):
    """The machinery failed, not the science: a Ray cluster that cannot be reached or joined
    (no cluster at the address, a missing token), a request no node can satisfy, a store the
    workers cannot see, nodes that run other code, a worker that kept dying. The command
    exits with :data:`INFRASTRUCTURE` and prints the message (one line that says what to
    do); finished runs stay in the store."""

    exit_code = INFRASTRUCTURE
