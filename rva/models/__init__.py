"""Models: manifests (one TOML file each), the fetch cache, and the inference backends."""
