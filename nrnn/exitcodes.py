"""The exit codes of every ``nrnn`` command, in one place.

A script (``make reproduce``, a cluster job) must be able to tell a finding from a failure:

=====  ==========================================================================
0      done; for ``nrnn verify``, every check ran and passed
2      usage error: a bad flag, ``--set`` or config value, an unusable ``--out`` or
       ``--store``; reported before any work starts
3      ``nrnn verify`` only: every check ran and some claim does not hold (a finding
       written to the report, not a failure of the command); nothing else exits 3
4      infrastructure failure: a training run failed (its worker kept crashing, it
       diverged, its checkpoint or store is damaged, an I/O error); no verdict is given
       from such a run
130    interrupted by Ctrl-C (SIGINT); 143: by SIGTERM (128 + the signal's number)
=====  ==========================================================================

1 stays Python's own code for a crash (an uncaught exception, with its traceback).
"""

from __future__ import annotations

import signal

OK = 0
USAGE = 2
CLAIM_DOES_NOT_HOLD = 3
INFRASTRUCTURE = 4
INTERRUPTED = 128 + signal.SIGINT
TERMINATED = 128 + signal.SIGTERM


class InfrastructureError(RuntimeError):
    """The machinery failed, not the user's input and not a claim: a Ray cluster that cannot
    be reached or joined (no cluster at the address, a missing token), a request no node can
    satisfy, a store the workers cannot see, nodes that run other code, a worker that kept
    dying, a run that failed. Commands exit :data:`INFRASTRUCTURE` and print the message
    (one line that says what to do); finished runs stay in the store."""

    exit_code = INFRASTRUCTURE
