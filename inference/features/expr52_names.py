"""The named expression space: ARKit's 52 blendshape names and how other vocabularies map onto them.

Order: Unreal's ``EARFaceBlendShape`` order, which is the order Live Link Face puts the 52 weights
on the wire (followed there by head yaw/pitch/roll and both eyes' yaw/pitch/roll). Names are
Apple's ``ARFaceAnchor.BlendShapeLocation`` raw values (lower camel case). "Left"/"Right" are the
*subject's* left and right, as in ARKit, Unified Expressions and the OpenXR face-tracking
extensions (FB ``_L``, HTC ``LEFT_``, Android ``_L``).

Every table here is plain data (names, never indices guessed at import): the OpenXR tables are keyed
by the extensions' enum member names, which ``xr_runtime/openxr/face_tracking.py`` resolves against
pyopenxr's real enums (and a test checks every name resolves).
"""
from __future__ import annotations

ARKIT52: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft", "eyeSquintLeft",
    "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight", "eyeSquintRight",
    "eyeWideRight",
    "jawForward", "jawLeft", "jawRight", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight", "mouthSmileLeft", "mouthSmileRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft",
    "mouthStretchRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft",
    "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)
INDEX: dict[str, int] = {n: i for i, n in enumerate(ARKIT52)}
# Live Link Face's 9 trailing values after the 52 weights (radians, see capture/interop/livelink.py).
LIVELINK_POSE = ("headYaw", "headPitch", "headRoll", "leftEyeYaw", "leftEyePitch", "leftEyeRoll",
                 "rightEyeYaw", "rightEyePitch", "rightEyeRoll")

# Which half of the face a weight belongs to (the builder's upper/lower-face recombination).
UPPER_FACE = frozenset(n for n in ARKIT52 if n.startswith(("eye", "brow")))
# Within the lower face, which weights may move what lies below the mouth (lower lip, chin, jaw
# line) and which only what lies above it (upper lip, nose, cheeks); the rest (the mouth corners'
# smile, frown, stretch, pucker, shift, press) move both. The builder's expr52 map keeps to it
# (inference/builder/kind_maps.py): fitted freely, it learned the target's habit of grinning with
# her jaw open as "the upper lip lifts the chin", which inverted every other driver's jaw.
BELOW_MOUTH = frozenset({"jawOpen", "jawLeft", "jawRight", "jawForward", "mouthClose", "mouthLowerDownLeft",
                         "mouthLowerDownRight", "mouthRollLower", "mouthShrugLower"})
ABOVE_MOUTH = frozenset({"mouthUpperUpLeft", "mouthUpperUpRight", "mouthRollUpper", "mouthShrugUpper",
                         "noseSneerLeft", "noseSneerRight", "cheekSquintLeft", "cheekSquintRight", "cheekPuff"})

# ARKit → Unified Expressions (VRCFaceTracking v5 names; OSC parameter /avatar/parameters/v2/<name>).
# One ARKit weight may drive several Unified shapes (its value copied); reading back, an ARKit
# weight is the mean of the Unified shapes present. Eyelids and gaze are not shapes in Unified
# Expressions: see UNIFIED_EYES.
ARKIT_TO_UNIFIED: dict[str, tuple[str, ...]] = {
    "eyeSquintLeft": ("EyeSquintLeft",), "eyeSquintRight": ("EyeSquintRight",),
    "eyeWideLeft": ("EyeWideLeft",), "eyeWideRight": ("EyeWideRight",),
    "jawForward": ("JawForward",), "jawLeft": ("JawLeft",), "jawRight": ("JawRight",), "jawOpen": ("JawOpen",),
    "mouthClose": ("MouthClosed",),
    "mouthFunnel": ("LipFunnelUpperLeft", "LipFunnelUpperRight", "LipFunnelLowerLeft", "LipFunnelLowerRight"),
    "mouthPucker": ("LipPuckerUpperLeft", "LipPuckerUpperRight", "LipPuckerLowerLeft", "LipPuckerLowerRight"),
    "mouthLeft": ("MouthUpperLeft", "MouthLowerLeft"), "mouthRight": ("MouthUpperRight", "MouthLowerRight"),
    "mouthSmileLeft": ("MouthCornerPullLeft", "MouthCornerSlantLeft"),
    "mouthSmileRight": ("MouthCornerPullRight", "MouthCornerSlantRight"),
    "mouthFrownLeft": ("MouthFrownLeft",), "mouthFrownRight": ("MouthFrownRight",),
    "mouthDimpleLeft": ("MouthDimpleLeft",), "mouthDimpleRight": ("MouthDimpleRight",),
    "mouthStretchLeft": ("MouthStretchLeft",), "mouthStretchRight": ("MouthStretchRight",),
    "mouthRollLower": ("LipSuckLowerLeft", "LipSuckLowerRight"),
    "mouthRollUpper": ("LipSuckUpperLeft", "LipSuckUpperRight"),
    "mouthShrugLower": ("MouthRaiserLower",), "mouthShrugUpper": ("MouthRaiserUpper",),
    "mouthPressLeft": ("MouthPressLeft",), "mouthPressRight": ("MouthPressRight",),
    "mouthLowerDownLeft": ("MouthLowerDownLeft",), "mouthLowerDownRight": ("MouthLowerDownRight",),
    "mouthUpperUpLeft": ("MouthUpperUpLeft",), "mouthUpperUpRight": ("MouthUpperUpRight",),
    "browDownLeft": ("BrowLowererLeft", "BrowPinchLeft"), "browDownRight": ("BrowLowererRight", "BrowPinchRight"),
    "browInnerUp": ("BrowInnerUpLeft", "BrowInnerUpRight"),
    "browOuterUpLeft": ("BrowOuterUpLeft",), "browOuterUpRight": ("BrowOuterUpRight",),
    "cheekPuff": ("CheekPuffLeft", "CheekPuffRight"),
    "cheekSquintLeft": ("CheekSquintLeft",), "cheekSquintRight": ("CheekSquintRight",),
    "noseSneerLeft": ("NoseSneerLeft",), "noseSneerRight": ("NoseSneerRight",),
    "tongueOut": ("TongueOut",),
}
# Unified Expressions' eye parameters: lid *openness* (1 open, 0 closed) = 1 − eyeBlink, and gaze
# X (+ = the subject's right) / Y (+ = up) in [-1, 1] from the look weights.
UNIFIED_EYES = ("EyeLidLeft", "EyeLidRight", "EyeLeftX", "EyeLeftY", "EyeRightX", "EyeRightY")

# XR_FB_face_tracking2 (XrFaceExpression2FB) and XR_ANDROID_face_tracking (XrFaceParameterIndicesANDROID)
# share the first 63 names (Meta's FACS-style set): ARKit weight = mean of the listed expressions.
# Gaze: FB/Android "LOOK_LEFT" is towards the subject's left, so the left eye's look-out is
# LOOK_LEFT_L and the right eye's look-in is LOOK_LEFT_R.
FACS_TO_ARKIT: dict[str, tuple[str, ...]] = {
    "eyeBlinkLeft": ("EYES_CLOSED_L",), "eyeBlinkRight": ("EYES_CLOSED_R",),
    "eyeLookDownLeft": ("EYES_LOOK_DOWN_L",), "eyeLookDownRight": ("EYES_LOOK_DOWN_R",),
    "eyeLookInLeft": ("EYES_LOOK_RIGHT_L",), "eyeLookInRight": ("EYES_LOOK_LEFT_R",),
    "eyeLookOutLeft": ("EYES_LOOK_LEFT_L",), "eyeLookOutRight": ("EYES_LOOK_RIGHT_R",),
    "eyeLookUpLeft": ("EYES_LOOK_UP_L",), "eyeLookUpRight": ("EYES_LOOK_UP_R",),
    "eyeSquintLeft": ("LID_TIGHTENER_L",), "eyeSquintRight": ("LID_TIGHTENER_R",),
    "eyeWideLeft": ("UPPER_LID_RAISER_L",), "eyeWideRight": ("UPPER_LID_RAISER_R",),
    "jawForward": ("JAW_THRUST",), "jawLeft": ("JAW_SIDEWAYS_LEFT",), "jawRight": ("JAW_SIDEWAYS_RIGHT",),
    "jawOpen": ("JAW_DROP",),
    "mouthClose": ("LIPS_TOWARD",),
    "mouthFunnel": ("LIP_FUNNELER_LB", "LIP_FUNNELER_LT", "LIP_FUNNELER_RB", "LIP_FUNNELER_RT"),
    "mouthPucker": ("LIP_PUCKER_L", "LIP_PUCKER_R"),
    "mouthLeft": ("MOUTH_LEFT",), "mouthRight": ("MOUTH_RIGHT",),
    "mouthSmileLeft": ("LIP_CORNER_PULLER_L",), "mouthSmileRight": ("LIP_CORNER_PULLER_R",),
    "mouthFrownLeft": ("LIP_CORNER_DEPRESSOR_L",), "mouthFrownRight": ("LIP_CORNER_DEPRESSOR_R",),
    "mouthDimpleLeft": ("DIMPLER_L",), "mouthDimpleRight": ("DIMPLER_R",),
    "mouthStretchLeft": ("LIP_STRETCHER_L",), "mouthStretchRight": ("LIP_STRETCHER_R",),
    "mouthRollLower": ("LIP_SUCK_LB", "LIP_SUCK_RB"), "mouthRollUpper": ("LIP_SUCK_LT", "LIP_SUCK_RT"),
    "mouthShrugLower": ("CHIN_RAISER_B",), "mouthShrugUpper": ("CHIN_RAISER_T",),
    "mouthPressLeft": ("LIP_PRESSOR_L",), "mouthPressRight": ("LIP_PRESSOR_R",),
    "mouthLowerDownLeft": ("LOWER_LIP_DEPRESSOR_L",), "mouthLowerDownRight": ("LOWER_LIP_DEPRESSOR_R",),
    "mouthUpperUpLeft": ("UPPER_LIP_RAISER_L",), "mouthUpperUpRight": ("UPPER_LIP_RAISER_R",),
    "browDownLeft": ("BROW_LOWERER_L",), "browDownRight": ("BROW_LOWERER_R",),
    "browInnerUp": ("INNER_BROW_RAISER_L", "INNER_BROW_RAISER_R"),
    "browOuterUpLeft": ("OUTER_BROW_RAISER_L",), "browOuterUpRight": ("OUTER_BROW_RAISER_R",),
    "cheekPuff": ("CHEEK_PUFF_L", "CHEEK_PUFF_R"),
    "cheekSquintLeft": ("CHEEK_RAISER_L",), "cheekSquintRight": ("CHEEK_RAISER_R",),
    "noseSneerLeft": ("NOSE_WRINKLER_L",), "noseSneerRight": ("NOSE_WRINKLER_R",),
    "tongueOut": ("TONGUE_OUT",),
}
FB2_TO_ARKIT = FACS_TO_ARKIT
ANDROID_TO_ARKIT = FACS_TO_ARKIT
# Which FB2 confidence (XrFaceConfidence2FB: LOWER_FACE, UPPER_FACE) / Android region confidence
# (XrFaceConfidenceRegionsANDROID: LOWER, LEFT_UPPER, RIGHT_UPPER) applies to an ARKit weight.
def facs_region(name: str, android: bool = False) -> str:
    if name not in UPPER_FACE:
        return "LOWER" if android else "LOWER_FACE"
    if not android:
        return "UPPER_FACE"
    return "LEFT_UPPER" if name.endswith("Left") else "RIGHT_UPPER"


# XR_HTC_facial_tracking: two trackers, eye (XrEyeExpressionHTC) and lip (XrLipExpressionHTC).
# ("eye", NAME) / ("lip", NAME); ARKit weight = mean of those listed. HTC has no brows or cheek squint.
HTC_TO_ARKIT: dict[str, tuple[tuple[str, str], ...]] = {
    "eyeBlinkLeft": (("eye", "LEFT_BLINK"),), "eyeBlinkRight": (("eye", "RIGHT_BLINK"),),
    "eyeWideLeft": (("eye", "LEFT_WIDE"),), "eyeWideRight": (("eye", "RIGHT_WIDE"),),
    "eyeSquintLeft": (("eye", "LEFT_SQUEEZE"),), "eyeSquintRight": (("eye", "RIGHT_SQUEEZE"),),
    "eyeLookDownLeft": (("eye", "LEFT_DOWN"),), "eyeLookDownRight": (("eye", "RIGHT_DOWN"),),
    "eyeLookOutLeft": (("eye", "LEFT_OUT"),), "eyeLookOutRight": (("eye", "RIGHT_OUT"),),
    "eyeLookInLeft": (("eye", "LEFT_IN"),), "eyeLookInRight": (("eye", "RIGHT_IN"),),
    "eyeLookUpLeft": (("eye", "LEFT_UP"),), "eyeLookUpRight": (("eye", "RIGHT_UP"),),
    "jawRight": (("lip", "JAW_RIGHT"),), "jawLeft": (("lip", "JAW_LEFT"),),
    "jawForward": (("lip", "JAW_FORWARD"),), "jawOpen": (("lip", "JAW_OPEN"),),
    "mouthClose": (("lip", "MOUTH_APE_SHAPE"),),
    "mouthRight": (("lip", "MOUTH_UPPER_RIGHT"), ("lip", "MOUTH_LOWER_RIGHT")),
    "mouthLeft": (("lip", "MOUTH_UPPER_LEFT"), ("lip", "MOUTH_LOWER_LEFT")),
    "mouthRollUpper": (("lip", "MOUTH_UPPER_INSIDE"),), "mouthRollLower": (("lip", "MOUTH_LOWER_INSIDE"),),
    "mouthShrugLower": (("lip", "MOUTH_LOWER_OVERLAY"),),
    "mouthFunnel": (("lip", "MOUTH_UPPER_OVERTURN"), ("lip", "MOUTH_LOWER_OVERTURN")),
    "mouthPucker": (("lip", "MOUTH_POUT"),),
    "mouthSmileRight": (("lip", "MOUTH_RAISER_RIGHT"),), "mouthSmileLeft": (("lip", "MOUTH_RAISER_LEFT"),),
    "mouthStretchRight": (("lip", "MOUTH_STRETCHER_RIGHT"),), "mouthStretchLeft": (("lip", "MOUTH_STRETCHER_LEFT"),),
    "cheekPuff": (("lip", "CHEEK_PUFF_RIGHT"), ("lip", "CHEEK_PUFF_LEFT")),
    "mouthUpperUpRight": (("lip", "MOUTH_UPPER_UPRIGHT"),), "mouthUpperUpLeft": (("lip", "MOUTH_UPPER_UPLEFT"),),
    "mouthLowerDownRight": (("lip", "MOUTH_LOWER_DOWNRIGHT"),),
    "mouthLowerDownLeft": (("lip", "MOUTH_LOWER_DOWNLEFT"),),
    "tongueOut": (("lip", "TONGUE_LONGSTEP1"),),
}

