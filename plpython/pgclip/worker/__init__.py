"""``python -m pgclip.worker``: run N PostgreSQL sessions that embed at once (clip_worker for
the queue of async columns, or clip_backfill), with one progress display and a clean stop on
Ctrl-C. A client program: the model runs in the server's backends, and nothing here imports
torch or open_clip (see :mod:`pgclip.worker.cli`)."""
