#version 330 core
// Static room geometry (floor, walls) in world space; lit in the fragment shader.
layout(location = 0) in vec3 a_position;
layout(location = 1) in vec3 a_normal;
layout(location = 2) in vec3 a_color;  // linear RGB
layout(location = 3) in float a_grid;  // 1 on the floor: draw grid lines there

uniform mat4 u_view_proj;

out vec3 v_world;
out vec3 v_normal;
out vec3 v_color;
out float v_grid;

void main() {
    v_world = a_position;
    v_normal = a_normal;
    v_color = a_color;
    v_grid = a_grid;
    gl_Position = u_view_proj * vec4(a_position, 1.0);
}
