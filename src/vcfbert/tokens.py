"""Token codes shared by the data code and the model (torch-free)."""

REF, ALT, MASK = 0, 1, 2
