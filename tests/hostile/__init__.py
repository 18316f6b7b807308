"""Hostile inputs for pgclip: a generated corpus of malformed image bytes (``corpus``), and a
throwaway PostgreSQL cluster that tests may crash or stop without harming the shared one
(``own_cluster``)."""
