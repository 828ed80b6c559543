"""Interop with the face-tracking ecosystem: adapters that turn Live Link Face, VMC and Unified
Expressions OSC into ordinary Headcast ``expr52`` streams, and emitters that send what a capture
node measures in those formats. Wire formats: docs/PROTOCOL.md, "Ecosystem formats"."""
