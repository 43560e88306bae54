"""fedge.converters"""
