"""What every AssetGen service shares: settings, logs, errors, server bootstrap, ids, NATS and SQL."""
