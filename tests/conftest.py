import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "xr: needs the Monado OpenXR runtime (runs inside scripts/monado_env.sh)")
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU; skipped without one")
    config.addinivalue_line("markers", "slow: takes more than ~20 s")
