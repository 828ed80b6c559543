import os
from pathlib import Path

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "xr: needs the Monado OpenXR runtime (runs inside scripts/monado_env.sh)")
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU; skipped without one")
    config.addinivalue_line("markers", "slow: takes more than ~20 s")


@pytest.fixture(scope="session")
def egl_available():
    """Skips (with the reason) where no headless EGL OpenGL context can be made."""
    from xr_runtime.gl import egl_context as gl_context

    try:
        gl_context.HeadlessGLContext().close()
    except gl_context.GLContextError as error:
        pytest.skip(f"no headless EGL OpenGL here: {error}")


@pytest.fixture
def egl_context():
    """A current headless EGL OpenGL context for the test (skips, with the reason, without one)."""
    from xr_runtime.gl.egl_context import GLContextError, HeadlessGLContext

    try:
        ctx = HeadlessGLContext()
    except GLContextError as error:
        pytest.skip(f"no headless EGL OpenGL here: {error}")
    yield ctx
    ctx.close()


@pytest.fixture(autouse=True)
def _openxr_validation(request):
    """XR tests run with the Khronos core validation layer (scripts/monado_env.sh enables it and
    names its log): a test during which the layer reported an error fails, naming the errors."""
    log = os.environ.get("HEADCAST_XR_VALIDATION_LOG")
    if not log or request.node.get_closest_marker("xr") is None:
        yield
        return
    path = Path(log)
    start = path.stat().st_size if path.exists() else 0
    yield
    if not path.exists():
        return
    with open(path, "rb") as f:
        f.seek(start)
        new = f.read().decode("utf-8", "replace")
    errors = [line for line in new.splitlines() if "VALID_ERROR" in line]
    if errors:
        pytest.fail(f"OpenXR core validation reported {len(errors)} error(s) during this test:\n"
                    + "\n".join(errors[:10]), pytrace=False)
