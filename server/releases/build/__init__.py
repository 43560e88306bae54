"""Release builds: a checkpoint converted into a release by a worker process
(:mod:`.builder` in the server, :mod:`.worker` in its own process, :mod:`.wire`
between them).
"""
