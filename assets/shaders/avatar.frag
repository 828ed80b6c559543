#version 330 core
// The dynamic texture already carries the captured shading, so the avatar is unlit. The texture
// is GL_SRGB8_ALPHA8: sampling returns linear values, the sRGB framebuffer re-encodes them.
in vec2 v_uv;

uniform sampler2D u_texture;
uniform float u_opacity;

out vec4 o_color;

void main() {
    vec4 c = texture(u_texture, v_uv);
    o_color = vec4(c.rgb, c.a * u_opacity);
}
