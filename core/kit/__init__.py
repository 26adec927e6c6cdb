"""The plugin authors' kit: the device emulator base (:mod:`.emulation`), line framing
(:mod:`.framing`), helpers for a plugin's tests (:mod:`.testing`: a real node,
in-process) and the renderer of ``tieline plugin new`` (:mod:`.template`).
"""
