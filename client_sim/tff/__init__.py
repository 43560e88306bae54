"""TensorFlow Federated as the reference engine for the same FedAvg, and its
runtime started and stopped by fedge.
"""
