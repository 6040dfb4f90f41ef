"""What a config names and a registry builds: models, losses, optimizers and schedulers, callbacks.
Components import neither the config, the tasks nor training (tests/test_imports.py)."""
