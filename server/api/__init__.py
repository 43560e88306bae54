"""The HTTP API: one Flask blueprint per resource (see ``server/openapi.yaml``).
The only package that reads Flask request objects; :mod:`.common` holds the
helpers every view uses (strict JSON bodies, credentials, bounded ids).
"""
