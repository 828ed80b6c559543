"""A built mesh.glb in Blender: import it with Blender's own glTF importer, list what arrived
(vertices, polygons, shape keys, materials and their blend modes), and render it with Cycles on
the CPU from the front, the side and the back against a transparent film; print, per view, how
much of the head is covered and how much of its inside is not opaque (see-through).

    blender -b --python scripts/check_glb_in_blender.py -- AVATAR/mesh.glb OUT_PREFIX

A manual check, not part of `make test` (Blender is a large install): Debian's
`apt-get install blender python3-numpy` (Blender 3.4.1 on Debian 12). Writes OUT_PREFIX_0.png,
_90.png, _180.png (RGBA). An avatar with a torso (a skin of two joints, body and neck) is also
rendered from the front with its neck bone turned 35° about the vertical (OUT_PREFIX_neck35.png),
and the script prints how much the lower band (the shoulders) and the upper band (the head) changed.
"""
import json
import math
import sys

import numpy

if not hasattr(numpy, "bool"):
    numpy.bool = bool  # Blender 3.4.1's glTF importer still uses the alias numpy 1.24 removed

import bpy  # noqa: E402
from mathutils import Vector  # noqa: E402

args = sys.argv[sys.argv.index("--") + 1:]
glb, out = args[0], args[1]
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.gltf(filepath=glb)
meshes = [o for o in bpy.context.scene.objects if o.type == "MESH"]
print("imported", json.dumps([{
    "name": o.name, "vertices": len(o.data.vertices), "polygons": len(o.data.polygons),
    "shape_keys": len(o.data.shape_keys.key_blocks) - 1 if o.data.shape_keys else 0,
    "materials": {m.name: m.blend_method for m in o.data.materials}} for o in meshes]))

armatures = [o for o in bpy.context.scene.objects if o.type == "ARMATURE"]
print("armatures", json.dumps({o.name: [b.name for b in o.data.bones] for o in armatures}))

corners = [o.matrix_world @ Vector(c) for o in meshes for c in o.bound_box]
lo = Vector([min(p[i] for p in corners) for i in range(3)])
hi = Vector([max(p[i] for p in corners) for i in range(3)])
centre, size = (lo + hi) / 2, hi - lo
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.device, scene.cycles.samples, scene.cycles.use_denoising = "CPU", 16, False
scene.render.resolution_x = scene.render.resolution_y = 256
scene.render.film_transparent = True
scene.render.image_settings.color_mode = "RGBA"
world = bpy.data.worlds.new("white")
scene.world = world
world.use_nodes = True
world.node_tree.nodes["Background"].inputs[0].default_value = (1, 1, 1, 1)
camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
camera.data.angle = math.radians(30)
scene.collection.objects.link(camera)
scene.camera = camera
distance = max(size.x, size.z) * 2.2
for yaw in (0, 90, 180):  # glTF's +Z front is Blender's −Y, its +Y up Blender's +Z
    a = math.radians(yaw)
    camera.location = centre + Vector((distance * math.sin(a), -distance * math.cos(a), 0))
    camera.rotation_euler = (centre - camera.location).to_track_quat("-Z", "Y").to_euler()
    scene.render.filepath = f"{out}_{yaw}.png"
    bpy.ops.render.render(write_still=True)
    pixels = numpy.array(bpy.data.images.load(scene.render.filepath).pixels[:]).reshape(256, 256, 4)
    alpha = pixels[..., 3]
    head = alpha > 0.5
    # The head's inside: head pixels whose 4-neighbours are head pixels too, two rings in.
    inside = head.copy()
    for _ in range(2):
        inside[1:-1, 1:-1] &= inside[:-2, 1:-1] & inside[2:, 1:-1] & inside[1:-1, :-2] & inside[1:-1, 2:]
    print(f"yaw {yaw}: head covers {head.mean():.3f} of the view; inside the head "
          f"{(alpha[inside] < 0.9).mean():.4f} not opaque; soft pixels {int(((alpha > 0.05) & (alpha < 0.95)).sum())}")

    if yaw == 0:
        front = pixels


def turn_neck(degrees: float) -> bool:
    """Rotate the pose bone "neck" about the armature's vertical (Blender Z) through its head."""
    from mathutils import Matrix

    for arm in armatures:
        bone = arm.pose.bones.get("neck")
        if bone is None:
            continue
        head = bone.head.copy()
        bone.matrix = Matrix.Translation(head) @ Matrix.Rotation(math.radians(degrees), 4, "Z") \
            @ Matrix.Translation(-head) @ bone.matrix
        bpy.context.view_layer.update()
        return True
    return False


if turn_neck(35.0):
    camera.location = centre + Vector((0, -distance, 0))
    camera.rotation_euler = (centre - camera.location).to_track_quat("-Z", "Y").to_euler()
    scene.render.filepath = f"{out}_neck35.png"
    bpy.ops.render.render(write_still=True)
    turned = numpy.array(bpy.data.images.load(scene.render.filepath).pixels[:]).reshape(256, 256, 4)
    # Blender's pixels are bottom row first: the shoulders are the first rows.
    low, high = slice(0, 256 // 5), slice(256 - int(256 * 0.45), 256)
    print(f"neck turned 35°: lower band changed {numpy.abs(turned[low] - front[low]).mean() * 255:.2f} levels, "
          f"upper band {numpy.abs(turned[high] - front[high]).mean() * 255:.2f} levels")
