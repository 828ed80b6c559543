"""Scene transforms (position, wxyz rotation, uniform scale) ↔ 4×4 model matrices.

Placements are kept *rigid* (translation + rotation) while grabbed, because `grab` works on rigid
matrices; the slot's scale is applied separately when drawing.
"""
from __future__ import annotations

import numpy as np

from geometry import transforms
from geometry.rotations import rotation_to_quaternion
from xr_runtime.avatars.state import AvatarPose
from xr_runtime.scene.scene_file import Transform


def rigid_matrix(position, rotation_wxyz) -> np.ndarray:
    w, x, y, z = rotation_wxyz
    return transforms.pose_matrix(position, (x, y, z, w))


def head_model_matrix(placement: np.ndarray, slot_scale: float, pose: AvatarPose) -> np.ndarray:
    """placement · head pose (about its pivot) · scale: the model → world matrix the avatar is drawn with."""
    s = slot_scale * pose.scale
    pivot = s * np.asarray(pose.pivot, dtype=np.float64)
    rotation = rigid_matrix((0.0, 0.0, 0.0), pose.rotation)
    head = transforms.translation(*(np.asarray(pose.translation) + pivot)) @ rotation @ transforms.translation(*-pivot)
    return (placement @ head @ transforms.scaling(s)).astype(np.float32)


def body_model_matrix(placement: np.ndarray, slot_scale: float, pose: AvatarPose) -> np.ndarray:
    """The body's model → world matrix: the head's without its rotation about the pivot. The body
    follows the head's translation (a lean moves the shoulders along) but not its turns and nods:
    the render node knows nothing else of the driver's body. Equal to ``head_model_matrix`` at rest,
    and both map the pivot to the same point, so the neck joins them."""
    s = slot_scale * pose.scale
    return (placement @ transforms.translation(*np.asarray(pose.translation, np.float64))
            @ transforms.scaling(s)).astype(np.float32)


def transform_from_rigid(m: np.ndarray, scale: float) -> Transform:
    return Transform(tuple(float(v) for v in np.asarray(m)[:3, 3]), rotation_to_quaternion(m), scale)
