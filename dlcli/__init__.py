"""dlcli: train PyTorch models from YAML experiment files."""

__version__ = "0.1.0"
