"""The HTTP layer: the Flask app factory (:mod:`.app`), the request context
the views read (:mod:`.context`), waitress (:mod:`.serve`) and what one
connection may cost (:mod:`.connections`: deadlines, a per-address cap, a
drain after refusals), body limits, CORS, security headers
(:mod:`.security_headers`), the browser pages, logs and Prometheus metrics.
"""
