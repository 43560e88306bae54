"""The model as a service: the request/response codec (:mod:`.codec`) and
running a bundle's TFLite model (:mod:`.serving`).
"""
