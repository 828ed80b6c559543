#version 330 core
// Blendshape head: neutral positions plus sum_k w_k * delta_k(vertex). The deltas live in a
// texture buffer uploaded once (k-major: texel k * vertex_count + vertex); only the K weights
// change per frame. MAX_BLENDSHAPES is defined by the loader.
// A torso (inference/head_model/torso.py) follows the body, not the head: each vertex blends
// between the head's matrix and the body's by its body weight (the neck's base: 1; the face: 0).
layout(location = 0) in vec3 a_position;
layout(location = 1) in vec2 a_uv;
layout(location = 2) in float a_body;

uniform mat4 u_view_proj;
uniform mat4 u_model;
uniform mat4 u_body;
uniform samplerBuffer u_basis;
uniform int u_vertex_count;
uniform int u_blend_count;
uniform float u_weights[MAX_BLENDSHAPES];

out vec2 v_uv;
out vec3 v_world;  // for the surface's facing (the learned alpha is the edge-on value)

void main() {
    vec3 p = a_position;
    for (int k = 0; k < u_blend_count; ++k) {
        float w = u_weights[k];
        if (w != 0.0) {
            p += w * texelFetch(u_basis, k * u_vertex_count + gl_VertexID).xyz;
        }
    }
    v_uv = a_uv;
    vec4 world = mix(u_model * vec4(p, 1.0), u_body * vec4(p, 1.0), a_body);
    v_world = world.xyz;
    gl_Position = u_view_proj * world;
}
