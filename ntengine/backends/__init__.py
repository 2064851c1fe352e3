"""Optional inference backends beside the PyTorch model; each imports its runtime lazily."""
