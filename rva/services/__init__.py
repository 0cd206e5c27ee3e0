"""The long-running programs, one package each, one systemd unit each: capture (rva-capture),
gears (rva-gears), stages (rva-stages), web (rva-web), mqtt (rva-mqtt).

A file's folder says which program it belongs to. Programs never import each other: what two
of them share lives in the core modules (rva/*.py) or a library package (rva.camera,
rva.models, rva.gears, rva.stages, rva.analytics); tests/test_layout.py holds that.
"""
