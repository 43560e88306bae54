"""The HTTP layer: the Flask app factory (:mod:`.app`), the request context
the views read (:mod:`.context`), waitress (:mod:`.serve`), body limits, CORS,
the browser pages, logs and Prometheus metrics.
"""
