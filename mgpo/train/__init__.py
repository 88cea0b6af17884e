"""`mgpo train`: MGPO and its GRPO / SFT baselines on TRL (trainer, rollout, data, rewards, config, run)."""
