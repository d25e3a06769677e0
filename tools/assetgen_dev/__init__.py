"""Developer tooling: `make run`'s supervisor, the embedded NATS and S3 servers, and the demo provider."""
