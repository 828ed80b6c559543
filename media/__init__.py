"""Media files Headcast writes (recordings). Bottom level: imports only `core`, so every layer that
writes a video — `xr_runtime` backends, `inference` (turntables), `tools` (evaluation) — uses the
one writer without importing upwards."""
