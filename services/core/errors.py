"""The exception tree, named by what the caller does next.

    StreamwreckError
    ├── ConfigError                 fail at start-up, one line naming the variable
    ├── TransientError              retry; don't checkpoint, don't delete the message
    │   ├── LedgerUnavailableError
    │   └── PublishError
    └── RejectedInputError          never retry; dead-letter or answer 4xx, move on

Library exceptions (pymemcache, botocore, socket) are translated once, where they are raised, with ``from exc``.
"""

from __future__ import annotations


class StreamwreckError(Exception):
    """Base of every error streamwreck raises on purpose."""


class ConfigError(StreamwreckError):
    """A setting is missing or invalid: stop at start-up with this one-line message."""


class TransientError(StreamwreckError):
    """Worth retrying later: nothing was lost, nothing may be acknowledged."""


class LedgerUnavailableError(TransientError):
    """The ledger (memcached) did not answer or answered with an error."""


class PublishError(TransientError):
    """Processed events could not be published (SNS) after the retries."""


class RejectedInputError(StreamwreckError):
    """Input that will never be valid, however often it is retried."""
