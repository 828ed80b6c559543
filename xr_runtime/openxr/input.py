"""Controllers through OpenXR's action system: a grip pose and a squeeze value per hand.

One action set ("headcast") with two actions, each with /user/hand/left and /user/hand/right as
subaction paths. Bindings are suggested for the common interaction profiles; the runtime picks
the one matching the user's hardware. Runtimes without controllers (Monado's simulated HMD)
simply report the hands inactive.
"""
from __future__ import annotations

import logging
from types import ModuleType

from xr_runtime.scene.hand import INACTIVE, HandState

log = logging.getLogger(__name__)

HANDS = ("left", "right")

# profile → (grip pose input, squeeze input). Profiles without an analogue squeeze use a click.
INTERACTION_PROFILES: dict[str, tuple[str, str]] = {
    "/interaction_profiles/khr/simple_controller": ("/input/grip/pose", "/input/select/click"),
    "/interaction_profiles/oculus/touch_controller": ("/input/grip/pose", "/input/squeeze/value"),
    "/interaction_profiles/valve/index_controller": ("/input/grip/pose", "/input/squeeze/value"),
    "/interaction_profiles/htc/vive_controller": ("/input/grip/pose", "/input/squeeze/click"),
    "/interaction_profiles/microsoft/motion_controller": ("/input/grip/pose", "/input/squeeze/click"),
}


class ControllerInput:
    """Create once per session (before the first xrSyncActions); `sample()` once per frame."""

    def __init__(self, xr: ModuleType, instance, session) -> None:
        self._xr, self._instance, self._session = xr, instance, session
        self.hand_paths = [xr.string_to_path(instance, f"/user/hand/{hand}") for hand in HANDS]
        self.action_set = xr.create_action_set(instance, xr.ActionSetCreateInfo(
            action_set_name="headcast", localized_action_set_name="Headcast", priority=0))
        self.grip = xr.create_action(self.action_set, xr.ActionCreateInfo(
            action_name="grip_pose", localized_action_name="Grip pose",
            action_type=xr.ActionType.POSE_INPUT, subaction_paths=self.hand_paths))
        self.squeeze = xr.create_action(self.action_set, xr.ActionCreateInfo(
            action_name="squeeze", localized_action_name="Grab",
            action_type=xr.ActionType.FLOAT_INPUT, subaction_paths=self.hand_paths))
        self.profiles = self._suggest_bindings(instance)
        xr.attach_session_action_sets(session, xr.SessionActionSetsAttachInfo(
            action_sets=[self.action_set]))
        self.spaces = [
            xr.create_action_space(session, xr.ActionSpaceCreateInfo(
                action=self.grip, subaction_path=path, pose_in_action_space=xr.Posef()))
            for path in self.hand_paths
        ]

    def _suggest_bindings(self, instance) -> list[str]:
        """Suggest per profile; a runtime may reject profiles it does not know, keep the rest."""
        xr, accepted = self._xr, []
        for profile, (grip_input, squeeze_input) in INTERACTION_PROFILES.items():
            bindings = []
            for hand in HANDS:
                bindings.append(xr.ActionSuggestedBinding(
                    self.grip, xr.string_to_path(instance, f"/user/hand/{hand}{grip_input}")))
                bindings.append(xr.ActionSuggestedBinding(
                    self.squeeze, xr.string_to_path(instance, f"/user/hand/{hand}{squeeze_input}")))
            try:
                xr.suggest_interaction_profile_bindings(instance, xr.InteractionProfileSuggestedBinding(
                    interaction_profile=xr.string_to_path(instance, profile),
                    suggested_bindings=(xr.ActionSuggestedBinding * len(bindings))(*bindings)))
                accepted.append(profile)
            except xr.ResultException as error:
                log.info("runtime rejected bindings for %s: %s", profile, error)
        return accepted

    def sample(self, base_space, display_time: int) -> dict[str, HandState]:
        """Sync the actions and read both hands at `display_time` (call only while FOCUSED)."""
        xr = self._xr
        xr.sync_actions(self._session, xr.ActionsSyncInfo(
            active_action_sets=[xr.ActiveActionSet(self.action_set, xr.NULL_PATH)]))
        hands = {}
        for hand, path, space in zip(HANDS, self.hand_paths, self.spaces):
            squeeze = xr.get_action_state_float(self._session, xr.ActionStateGetInfo(
                action=self.squeeze, subaction_path=path))
            pose_state = xr.get_action_state_pose(self._session, xr.ActionStateGetInfo(
                action=self.grip, subaction_path=path))
            if not pose_state.is_active:
                hands[hand] = INACTIVE
                continue
            location = xr.locate_space(space, base_space, display_time)
            valid = xr.SpaceLocationFlags.POSITION_VALID_BIT | xr.SpaceLocationFlags.ORIENTATION_VALID_BIT
            if (location.location_flags & valid) != valid:
                hands[hand] = INACTIVE
                continue
            p, q = location.pose.position, location.pose.orientation
            hands[hand] = HandState(True, (p.x, p.y, p.z), (q.x, q.y, q.z, q.w),
                                    float(squeeze.current_state) if squeeze.is_active else 0.0)
        return hands

    def current_profiles(self) -> dict[str, str]:
        """The interaction profile the runtime bound per hand ('' when none)."""
        xr, out = self._xr, {}
        for hand, path in zip(HANDS, self.hand_paths):
            state = xr.get_current_interaction_profile(self._session, path)
            profile = int(state.interaction_profile)
            out[hand] = xr.path_to_string(self._instance, profile) if profile else ""
        return out

    def destroy(self) -> None:
        xr = self._xr
        for handle, destroy in ([(s, xr.destroy_space) for s in self.spaces]
                                + [(self.action_set, xr.destroy_action_set)]):
            try:
                destroy(handle)
            except xr.ResultException as error:
                log.debug("%s: %s", destroy.__name__, error)
        self.spaces = []
