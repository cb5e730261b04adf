"""HTTP origin: serves the packager's store (or an output folder) to players and CDNs."""
