#version 330 core
// The atlas is coverage (GL_R8); the colour comes from a uniform.
in vec2 v_uv;
uniform sampler2D u_atlas;
uniform vec4 u_color;
out vec4 o_color;
void main() { o_color = vec4(u_color.rgb, u_color.a * texture(u_atlas, v_uv).r); }
