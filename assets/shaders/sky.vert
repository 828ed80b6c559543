#version 330 core
// One triangle covering the screen; no vertex buffer (positions from gl_VertexID).
out vec2 v_ndc;

void main() {
    vec2 p = vec2((gl_VertexID << 1) & 2, gl_VertexID & 2) * 2.0 - 1.0;
    v_ndc = p;
    gl_Position = vec4(p, 0.0, 1.0);
}
