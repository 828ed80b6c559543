"""What the whole-head part of a build is asked to do: head mattes and the carved head shell."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from inference.head_model.head_shell import ShellConfig
from inference.head_model.matte import MatteConfig


@dataclass(frozen=True)
class WholeHeadConfig:
    enabled: bool = True
    matte: MatteConfig = field(default_factory=MatteConfig)
    shell: ShellConfig = field(default_factory=ShellConfig)

    def to_dict(self) -> dict:
        return asdict(self)
