"""The long-running programs, one package each: capture (rva-capture.service), gears
(rva-gears.service), web (rva-web.service), mqtt (rva-mqtt.service), and stages, which every
rva-gears worker stands in for (no unit ships for `rva stages`; run it where workers use
`--no-stages`).

A file's folder says which program it belongs to. Programs never import each other: what two
of them share lives in the core modules (rva/*.py) or a library package (rva.camera,
rva.models, rva.gears, rva.stages, rva.analytics); tests/test_layout.py holds that.
"""
