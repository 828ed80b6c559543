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
