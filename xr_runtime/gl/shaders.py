"""Compiling and linking the GLSL programs shipped in `xr_runtime/shaders/`."""
from __future__ import annotations

from importlib import resources

from OpenGL import GL

from core.errors import HeadcastError


class ShaderError(HeadcastError, RuntimeError):
    """A shader failed to compile or link; the message holds the driver's log."""


def shader_source(name: str, defines: dict[str, object] | None = None) -> str:
    """Source of a shipped shader, with `#define`s inserted right after its `#version` line."""
    text = resources.files("assets").joinpath("shaders", name).read_text()
    if not defines:
        return text
    version, _, body = text.partition("\n")
    lines = "".join(f"#define {key} {value}\n" for key, value in defines.items())
    return f"{version}\n{lines}{body}"


def _compile(kind: int, source: str, name: str) -> int:
    shader = GL.glCreateShader(kind)
    GL.glShaderSource(shader, source)
    GL.glCompileShader(shader)
    if not GL.glGetShaderiv(shader, GL.GL_COMPILE_STATUS):
        info = GL.glGetShaderInfoLog(shader).decode(errors="replace")
        GL.glDeleteShader(shader)
        raise ShaderError(f"{name}: {info}")
    return shader


def build_program(vertex: str, fragment: str, defines: dict[str, object] | None = None) -> int:
    """Link a program from two shipped shader files; returns the GL program name."""
    shaders = [
        _compile(GL.GL_VERTEX_SHADER, shader_source(vertex, defines), vertex),
        _compile(GL.GL_FRAGMENT_SHADER, shader_source(fragment, defines), fragment),
    ]
    program = GL.glCreateProgram()
    for shader in shaders:
        GL.glAttachShader(program, shader)
    GL.glLinkProgram(program)
    for shader in shaders:
        GL.glDetachShader(program, shader)
        GL.glDeleteShader(shader)
    if not GL.glGetProgramiv(program, GL.GL_LINK_STATUS):
        info = GL.glGetProgramInfoLog(program).decode(errors="replace")
        GL.glDeleteProgram(program)
        raise ShaderError(f"{vertex}+{fragment}: {info}")
    return program


def uniform_locations(program: int, names: list[str]) -> dict[str, int]:
    """Locations by name (-1 for uniforms the compiler optimised away, which GL then ignores)."""
    return {name: GL.glGetUniformLocation(program, name) for name in names}
