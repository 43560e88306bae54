"""What a simulation shows: the fleet report's records (:mod:`.fleet_report`),
tables, closing lines, plots (:mod:`.tables`, :mod:`.releases`).
"""
