"""The `assetgen` management CLI, speaking gRPC to the gateway."""
