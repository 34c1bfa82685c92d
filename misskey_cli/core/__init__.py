"""Pure Misskey knowledge shared by the client and the simulator: frames, channels, times, safe text."""
