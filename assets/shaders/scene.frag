#version 330 core
// Lambert + ambient in *linear* light; the sRGB framebuffer does the encoding on write.
in vec3 v_world;
in vec3 v_normal;
in vec3 v_color;
in float v_grid;

uniform vec3 u_light_dir;    // unit vector towards the light, world space
uniform vec3 u_light_color;
uniform vec3 u_ambient;
uniform vec3 u_grid_color;
uniform float u_grid_spacing;

out vec4 o_color;

void main() {
    vec3 base = v_color;
    if (v_grid > 0.5) {
        // Anti-aliased grid lines: distance to the nearest line in units of screen pixels.
        vec2 cell = v_world.xz / u_grid_spacing;
        vec2 dist = abs(fract(cell - 0.5) - 0.5) / max(fwidth(cell), vec2(1e-6));
        float line = 1.0 - min(min(dist.x, dist.y), 1.0);
        base = mix(base, u_grid_color, line);
    }
    float diffuse = max(dot(normalize(v_normal), u_light_dir), 0.0);
    o_color = vec4(base * (u_ambient + u_light_color * diffuse), 1.0);
}
