#version 330 core
// The refined avatar over the scene (refinement_pass.py). u_layer: the avatar alone, premultiplied
// sRGB-encoded colour + alpha, at the layer's resolution; u_delta: the network's correction
// (output − input) at its own size, bilinear, zero beyond the crop. The correction applies above
// the chin line only, as it was trained. Depth: the layer's own where the mesh was drawn, else
// u_fill_depth (the head's centre) for what the network adds beyond the mesh. Two passes, as for
// the mesh: 0 keeps the opaque result and writes depth; 1 blends the rest without writing it.
in vec2 v_uv;

uniform sampler2D u_layer;
uniform sampler2D u_layer_depth;
uniform sampler2D u_delta;
uniform vec2 u_chin;        // a point of the chin line, layer uv
uniform vec2 u_up;          // chin → forehead direction, layer uv
uniform float u_fill_depth;
uniform float u_opacity;
uniform int u_pass;

out vec4 o_color;

void main() {
    vec4 base = textureLod(u_layer, v_uv, 0.0);  // level 0: its mips are the network input only
    float m = dot(v_uv - u_chin, u_up) >= 0.0 ? 1.0 : 0.0;
    vec4 d = texture(u_delta, v_uv) * m;
    float a = clamp(base.a + d.a, 0.0, 1.0);
    vec3 c = min(clamp(base.rgb + d.rgb, 0.0, 1.0), vec3(a));
    if (a < 1.0 / 255.0 || (u_pass == 0) != (a >= OPAQUE_ALPHA)) {
        discard;
    }
    vec3 s = c / a;  // straight sRGB-encoded colour
    vec3 linear = mix(s / 12.92, pow((s + 0.055) / 1.055, vec3(2.4)), step(0.04045, s));
    float z = texture(u_layer_depth, v_uv).r;
    gl_FragDepth = z < 1.0 ? z : u_fill_depth;
    o_color = vec4(linear, a * u_opacity);
}
