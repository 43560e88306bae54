"""Helpers of ``bench.server_ingest_bench``: which servers it starts
(this tree's or an older commit's, on SQLite or N workers on PostgreSQL)
and the timed uploads to them."""
