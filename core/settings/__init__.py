"""Settings: the loader (:mod:`.loader`: a settings folder checked against the core's and
every plugin's JSON Schemas, and the one writer of the files a node changes), JSON files
with positions (:mod:`.jsonfile`), atomic file writes, and the catalogue of bundled
schemas (:mod:`.catalog`).

Importing this package loads none of them: each is imported where it is used.
"""
