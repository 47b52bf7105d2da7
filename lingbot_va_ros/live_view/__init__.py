"""Live view of the model's imagination: decode each chunk's predicted latents off the control path (no rclpy)."""
