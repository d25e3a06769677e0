"""What every AssetGen service shares: settings, logging, errors, server bootstrap, ids, NATS and SQL helpers."""
