"""Chain access: the RPC client, batched reads, the dev chain."""
