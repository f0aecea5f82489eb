"""The journal: the one durable place between polling and delivery.

Rules that carry the delivery guarantee (``docs/guarantees.md``), whatever the backend:

* A page's events and its source's new cursor are written in ONE transaction. A crash keeps
  both or neither, so a cursor never moves past events that are not on disk.
* Each sink has its own offset (the last ``seq`` its receiver confirmed). It moves only after
  confirmation, so a restart resumes every sink where it stopped.
* An event is deleted only once every configured sink's offset is past it.

``protocols`` says what the poller, the sink workers and the tools need of a journal;
``sqlite`` is the embedded backend, one module per concern beside it (events, cursors,
offsets, quarantine, dead letters, the schema), each working on the connection it is given so
that a page and its cursor stay one transaction.
"""

from forwarder.journal.protocols import DeliveryJournal, PollJournal, StateJournal
from forwarder.journal.schema import STATE_VERSION
from forwarder.journal.sqlite import SqliteJournal, SqliteState
from forwarder.journal.types import DeadLetter, DiskFullError, FencedError, JournalStats, SinkLag, StateError

__all__ = [
    "STATE_VERSION",
    "DeadLetter",
    "DeliveryJournal",
    "DiskFullError",
    "FencedError",
    "JournalStats",
    "PollJournal",
    "SinkLag",
    "SqliteJournal",
    "SqliteState",
    "StateError",
    "StateJournal",
]
