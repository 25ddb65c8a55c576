"""Large tables: the online path of a run.

A revision's operations on an existing table that is large (PostgreSQL's estimate of
its rows, ``pg_class.reltuples``, reaches ``-x online_threshold``, 5,000 by default;
``-x online=always|never`` forces it) must not hold a lock that stalls the chat API
while they rewrite, backfill, validate or index it. So every upgrade has two passes:

1. pass 1 (:mod:`.prepare`) collects those operations from the pending revisions
   (:mod:`.ops` overrides Alembic's operations) and runs them online
   (:mod:`.steps`, on an :mod:`.executor`): catalog changes under a short
   lock_timeout, backfills in batches sized from their measured duration, NOT NULL
   and foreign keys validated without blocking writes, indexes built CONCURRENTLY.
   Each step commits as it goes and is resumable: killed at any point, a re-run
   finishes the job and loses nothing.
2. pass 2 is the run's one transaction: every revision runs, finding the slow work
   done, so its locks are held for catalog changes only.

:mod:`.state` holds what one run knows; :mod:`.settings` the ``-x online*`` options.
"""

from chatdb.deploy.online import ops  # noqa: F401 - registers the operations with Alembic
