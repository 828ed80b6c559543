#version 330 core
// Opaque and unlit, like the head (the texture carries the captured shading). Its own program
// rather than the avatar's: no blendshapes, gaze, edge alpha or discard, so the torso, which can
// cover more of the eye than the head, costs one texture sample per fragment and keeps early
// depth rejection (llvmpipe: the avatar program cost 1.5 ms per 640×480 eye for one bust).
in vec2 v_uv;

uniform sampler2D u_texture;  // GL_SRGB8_ALPHA8: sampling decodes to linear
uniform float u_opacity;

out vec4 o_color;

void main() {
    o_color = vec4(texture(u_texture, v_uv).rgb, u_opacity);
}
