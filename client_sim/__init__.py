"""fedge.client_sim"""
