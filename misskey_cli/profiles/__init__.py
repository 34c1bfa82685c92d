"""Config profiles: reading config.toml, editing it, and MiAuth login/logout."""
