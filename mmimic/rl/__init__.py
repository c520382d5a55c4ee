"""The learner: PPO with a Gaussian MLP policy, observation normalization, rollout collection over a
batched TorchRL env, and adversarial rewards (AMP or error aggregation). One module per piece:

- ``networks``: actor / critic MLPs, Gaussian helpers;
- ``normalizer``: running mean / std normalization on the device;
- ``rollout``: ``collect`` (env steps -> ``[N, T]`` TensorDict), ``EpisodeStats``;
- ``ppo``: ``PPOConfig``, ``PPO`` (``act``, ``update``), ``compute_gae``;
- ``amp``: ``AdversarialConfig``, ``AdversarialReward`` (``update``, ``reward``), feature helpers.
"""

from mmimic.rl.amp import (AdversarialConfig, AdversarialReward, FeatureReplay, error_features, style_reward,
                           transition_features)
from mmimic.rl.networks import Critic, GaussianActor, NetworkConfig, mlp
from mmimic.rl.normalizer import RunningNormalizer
from mmimic.rl.ppo import PPO, PPOConfig, compute_gae
from mmimic.rl.rollout import EpisodeStats, collect

__all__ = ["PPO", "AdversarialConfig", "AdversarialReward", "Critic", "EpisodeStats", "FeatureReplay",
           "GaussianActor", "NetworkConfig", "PPOConfig", "RunningNormalizer", "collect", "compute_gae",
           "error_features", "mlp", "style_reward", "transition_features"]
