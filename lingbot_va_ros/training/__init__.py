"""Post-training LingBot-VA on demonstration datasets (``lingbot-va-train``), no rclpy.

Pipeline: DemoEpisodes (LeRobot reader) -> key-frame rows and aligned action frames (``keyframes``) ->
latent + prompt cache through the inference VAE / UMT5 (``latent_cache``) -> per-sample randomness and the
teacher-forcing sequence with the causal video-action mask (``sequence``, ``mask``) -> flow-matching losses
(``losses``) -> FSDP / single-process trainer with resumable safetensors checkpoints (``trainer``,
``checkpoint``, ``distributed``) -> an official ``transformer/`` folder + embodiment YAML (``export``).
"""
