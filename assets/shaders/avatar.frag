#version 330 core
// The dynamic texture already carries the captured shading, so the avatar is unlit. The texture
// is GL_SRGB8_ALPHA8: sampling returns linear values, the sRGB framebuffer re-encodes them.
// Gaze (xr_runtime/avatars/eyelids.py): inside each eye's opening the texture is sampled shifted by
// that eye's gaze offset, weighted down to 0 at the opening's border, so iris and pupil move in
// the socket while the lid skin around it stays put.
// Alpha (inference/head_model/alpha_atlas.py): the texture's A is the whole head's learned alpha
// *seen edge-on*; it is applied by how edge-on this fragment's triangle faces the eye, so the hair's
// outline is soft from any side and the same hair seen face-on is opaque. Two passes (renderer.py):
// 0 draws what is opaque and writes depth, 1 blends the rest over it without writing depth.
// Layer (u_layer = 1, xr_runtime/gl/refinement_pass.py): the avatar alone into its refinement
// layer, as premultiplied sRGB-encoded colour (what the screen-space network was trained on:
// texture bytes / 255 × alpha), into a linear float target blended with ONE, ONE_MINUS_SRC_ALPHA.
in vec2 v_uv;
in vec3 v_world;

uniform sampler2D u_texture;
uniform float u_opacity;
uniform vec3 u_eye_pos;         // world position of this view's eye
uniform int u_pass;             // 0: opaque fragments, 1: translucent ones
uniform int u_eye_count;        // 0: no gaze, 2: right and left eye below
uniform vec2 u_eye_centre[2];   // UV of each opening's centre
uniform mat2 u_eye_axes[2];     // half eye width → UV (columns: along the eye, up)
uniform vec2 u_gaze_uv[2];      // UV offset of each iris
uniform sampler2D u_eye_texture; // her relaxed open-eyed face: the eye regions come from it
uniform int u_eye_mix;          // 1: u_eye_texture is set
uniform float u_closure[2];     // lid closure per eye (0 open, 1 shut)
uniform float u_lid_skin_below; // the same for the lower half, as a share of u_lid_skin
uniform float u_lid_skin;       // half eye widths the shut lid's texture is taken from above (LID_SKIN_SHIFT)
uniform int u_layer;            // 1: premultiplied sRGB-encoded output (refinement layer)

out vec4 o_color;

const vec2 ELLIPSE = vec2(GAZE_EX, GAZE_EY);  // the opening, in half eye widths (GAZE_ELLIPSE)
const vec2 EYE_REGION = vec2(1.25, 0.85);  // opening, lids and crease (EYE_REGION)

void main() {
    vec2 uv = v_uv;
    float m = 0.0;
    for (int e = 0; e < u_eye_count; ++e) {
        vec2 q = inverse(u_eye_axes[e]) * (v_uv - u_eye_centre[e]);
        float r = length(q / ELLIPSE);
        float w = 1.0 - smoothstep(0.55, 1.0, r);
        uv -= w * u_gaze_uv[e];
        // A shutting lid shows the skin above the lash line: near the collapsed opening, sample
        // from higher up (the texture's eye opening need not line up with the mesh's lid line).
        float lid = 1.0 - smoothstep(0.6, 1.0, length(q / vec2(LID_X, 0.75)));
        float c = clamp(u_closure[e], 0.0, 1.0);
        // Upper half from above, lower half from below: neither iris nor sclera can show.
        float side = q.y >= 0.0 ? 1.0 : -u_lid_skin_below;
        uv += lid * smoothstep(0.5, 1.0, c) * u_lid_skin * side * u_eye_axes[e][1];
        m = max(m, 1.0 - smoothstep(0.75, 1.0, length(q / EYE_REGION)));
    }
    vec4 c = texture(u_texture, uv);
    if (u_eye_mix == 1 && m > 0.0) {
        c = mix(c, texture(u_eye_texture, uv), m);
    }
    vec3 n = normalize(cross(dFdx(v_world), dFdy(v_world)));
    float facing = abs(dot(n, normalize(u_eye_pos - v_world)));
    float a = 1.0 - (1.0 - c.a) * (1.0 - smoothstep(EDGE_COS_LO, EDGE_COS_HI, facing));
    if ((u_pass == 0) != (a >= OPAQUE_ALPHA)) {
        discard;
    }
    if (u_layer == 1) {
        vec3 srgb = mix(12.92 * c.rgb, 1.055 * pow(c.rgb, vec3(1.0 / 2.4)) - 0.055, step(0.0031308, c.rgb));
        o_color = vec4(srgb * a, a);
        return;
    }
    o_color = vec4(c.rgb, a * u_opacity);
}
