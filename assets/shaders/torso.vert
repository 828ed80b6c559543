#version 330 core
// An avatar's torso (inference/head_model/torso.py): static geometry in model space at rest,
// drawn with the body's matrix (the head's placement and translation, not its rotation).
layout(location = 0) in vec3 a_position;
layout(location = 1) in vec2 a_uv;

uniform mat4 u_view_proj;
uniform mat4 u_body;

out vec2 v_uv;

void main() {
    v_uv = a_uv;
    gl_Position = u_view_proj * (u_body * vec4(a_position, 1.0));
}
