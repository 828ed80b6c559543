"""Where frames come from and go to: OpenXR, a desktop window, or offscreen (headless).

Every backend owns its GL context and paces the loop; the render node supplies a `FrameHandler`
and never knows which backend runs it. `select.choose_backend` picks one automatically.
"""
