"""Bundle files on disk: the manifest (:mod:`.manifest`), one file's record
(:mod:`.files`), file hashes,
a bundle as a tar (:mod:`.tar`) and its weights as a checkpoint (:mod:`.weights`).
"""
