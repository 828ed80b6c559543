"""Small geometry helpers shared by the capture side and the runtime (no project imports)."""
