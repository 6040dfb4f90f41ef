"""Working from a checkpoint alone: `dlcli eval`, `dlcli infer` and `dlcli export`."""
