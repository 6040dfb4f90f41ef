"""Running a training: build objects from a config, the engine, the session around it, checkpoints,
resume, signals, DDP and sweeps."""
