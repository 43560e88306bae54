"""fedge: an edge and browser embedded-inference kit with federated updates.

The shared core lives here (reference task, model, CLI); the design card's
folders ``converters/``, ``server/`` and ``client_sim/`` are mapped onto
``fedge.converters``, ``fedge.server`` and ``fedge.client_sim``.
"""

__version__ = "0.1.0"
