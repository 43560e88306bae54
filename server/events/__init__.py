"""Events: the log devices subscribe to (:mod:`.log`), waking streams
(:mod:`.feed`), and serving them as SSE or long-poll (:mod:`.stream`).
"""
