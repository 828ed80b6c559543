"""The render node's live page (`headcast render --web`): the spectator view, the stream table and
the per-stage latency plot, served on its own thread; see `server.py`."""
