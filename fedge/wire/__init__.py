"""Wire formats shared by the server, the devices and the CLI: the update
codec (its header checks and its metadata in modules of their own), the
weight spec, strict JSON, server-sent events, release and canary records.
Imports nothing from ``server``, ``client_sim`` or ``converters``.
"""
