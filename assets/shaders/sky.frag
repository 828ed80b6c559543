#version 330 core
// Vertical gradient by world-space view direction, so it stays put as the head turns.
in vec2 v_ndc;

uniform mat4 u_inv_view_proj;  // inverse of projection * rotation-only view
uniform vec3 u_zenith;
uniform vec3 u_horizon;
uniform vec3 u_ground;

out vec4 o_color;

void main() {
    vec4 far_point = u_inv_view_proj * vec4(v_ndc, 1.0, 1.0);
    vec3 dir = normalize(far_point.xyz / far_point.w);
    vec3 color = dir.y >= 0.0
        ? mix(u_horizon, u_zenith, pow(dir.y, 0.6))
        : mix(u_horizon, u_ground, min(-dir.y * 4.0, 1.0));
    o_color = vec4(color, 1.0);
}
