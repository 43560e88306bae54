"""The reference task: scikit-learn's 8x8 digits (:mod:`.data`), the reference
CNN (:mod:`.model`), its central training (:mod:`.train`) and its shipped
initial weights (:mod:`.weights`).
"""
