"""Every exception streamwreck raises on purpose, named by what the caller does next.

    StreamwreckError
    ├── ConfigError                 fix the setting or argument: stop at start-up, one line naming it
    ├── TransientError              retry later; don't checkpoint, don't delete the message
    │   ├── LedgerUnavailableError  memcached did not answer
    │   ├── PublishError            SNS still failing after the retries
    │   └── WaitTimeout             something awaited (a stream, a process, a lease) did not come in time
    ├── RejectedInputError          never retry this input; dead-letter it or answer 4xx, and move on
    ├── AwsError                    an AWS call failed for a reason retrying will not fix (credentials, not found, ...)
    ├── ApiError                    the reconcile API is unreachable or failing after the client's retries, refused
    │                               the request, or answered something that does not fit it
    ├── LeaseTableError             the KCL lease table is not the audited stream's consumer's
    ├── LocalStackError             the embedded local stack could not do what was asked
    │   ├── StartError              a part did not start (its log's tail is in the message)
    │   ├── AlreadyUp               `local up` while a stack is up
    │   └── NotUp                   a command that needs the stack, while none is up
    ├── DeployError                 a deployment step (CloudFormation, docker) failed
    └── InternalError               a bug: an exception nobody expected, kept as its __cause__

Two live elsewhere, beside what raises them: ``streamwreck.api.reconcile.RequestProblem`` (a RejectedInputError
with the HTTP status the API answers it with) and the checker's private stop and throttle signals.

Library exceptions (botocore, pymemcache, httpx, socket) are caught by their own types at the boundary where they
are raised and translated once, ``raise X(...) from exc``. The command line prints a StreamwreckError as one line
and exits 2; anything else is an internal error (one line, exit 2, the traceback in the debug log), never disguised
as one of the above.
"""

from __future__ import annotations


class StreamwreckError(Exception):
    """Base of every error streamwreck raises on purpose."""


class ConfigError(StreamwreckError):
    """A setting or an argument is missing or invalid: stop at start-up with this one-line message."""


class TransientError(StreamwreckError):
    """Worth retrying later: nothing was lost, nothing may be acknowledged."""


class LedgerUnavailableError(TransientError):
    """The ledger (memcached) did not answer or answered with an error."""


class PublishError(TransientError):
    """Processed events could not be published (SNS) after the retries."""


class WaitTimeout(TransientError):
    """A condition awaited with :func:`streamwreck.core.clock.wait_until` did not come true in time."""


class RejectedInputError(StreamwreckError):
    """Input that will never be valid, however often it is retried."""


class AwsError(StreamwreckError):
    """An AWS call failed in a way retrying will not fix: no credentials, no such stream, endpoint unreachable."""


class ApiError(StreamwreckError):
    """The reconcile API cannot answer: unreachable or failing (5xx, its ledger down) after the client's retries,
    refusing the request (4xx), or answering something that does not fit the request."""


class LeaseTableError(StreamwreckError):
    """The lease table named by ``--kcl-app`` is not this stream's consumer's (or cannot be read as one)."""


class LocalStackError(StreamwreckError):
    """The embedded local stack (``streamwreck local``) could not do what was asked."""


class StartError(LocalStackError):
    """A part of the local stack did not start or did not become ready."""


class AlreadyUp(LocalStackError):
    """``local up`` while a stack is already up in that folder."""


class NotUp(LocalStackError):
    """A command that needs the local stack, while none is up in that folder."""


class DeployError(StreamwreckError):
    """A deployment step failed (CloudFormation, docker build or push)."""


class InternalError(StreamwreckError):
    """An exception nobody expected: a bug. The original is the ``__cause__``; report it with the debug log."""
