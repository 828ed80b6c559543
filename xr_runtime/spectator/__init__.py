"""The spectator view: what the render node shows people who are not in the headset — the web
page (`xr_runtime/web`) and the virtual camera — taken from one eye after it was drawn."""
