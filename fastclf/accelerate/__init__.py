"""Accelerating: export faster variants, check them against torch-fp32, choose a default."""
