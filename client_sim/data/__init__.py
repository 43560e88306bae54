"""The devices' data: the user's files (:mod:`.user_data`), the reference
task's non-IID partition, the split of a user's dataset across devices, and
the fleet's data (:mod:`.fleet_data`).
"""
