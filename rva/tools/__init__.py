"""The one-shot tools of the `rva` command: init, status, top, count (with labels), bench.

Tools may use any program's parts (bench runs the whole pipeline); programs never use tools.
"""
