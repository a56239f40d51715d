"""The RLHF message model: base model, SFT with LoRA, Bradley-Terry reward model, PPO on text."""
