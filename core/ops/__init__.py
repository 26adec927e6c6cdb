"""Operations around a node: mDNS discovery (:mod:`.discovery`), systemd notification and
unit files (:mod:`.systemd`), and the demo's settings (:mod:`.demo`).
"""
