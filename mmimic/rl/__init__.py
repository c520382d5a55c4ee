"""The learner: PPO with a Gaussian MLP policy, observation normalization, rollout collection over a
batched TorchRL env, and adversarial rewards (AMP or error aggregation). One module per piece:

- ``networks``: actor / critic MLPs, Gaussian helpers;
- ``normalizer``: running mean / std normalization on the device;
- ``learner``: the ``Learner`` interface (``act``, ``observe``, ``update``, ``state_dict``);
- ``rollout``: ``collect`` (env steps -> ``[N, T]`` TensorDict), ``EpisodeStats``;
- ``ppo``: ``PPOConfig``, ``PPO`` (the first Learner), ``compute_gae``;
- ``amp``: ``AdversarialConfig``, ``AdversarialReward`` (the discriminator), ``AdversarialShaper``
  (adds its reward to a rollout's), feature helpers;
- ``checkpoint``: atomic checkpoint files; ``trainer``: the training loop.
"""

from mmimic.rl.amp import (AdversarialConfig, AdversarialReward, AdversarialShaper, FeatureReplay, error_features,
                           style_reward, transition_features)
from mmimic.rl.learner import Learner
from mmimic.rl.networks import Critic, GaussianActor, NetworkConfig, mlp
from mmimic.rl.normalizer import RunningNormalizer
from mmimic.rl.ppo import PPO, PPOConfig, compute_gae
from mmimic.rl.rollout import EpisodeStats, collect

__all__ = ["PPO", "AdversarialConfig", "AdversarialReward", "AdversarialShaper", "Critic", "EpisodeStats",
           "FeatureReplay", "GaussianActor", "Learner", "NetworkConfig", "PPOConfig", "RunningNormalizer", "collect",
           "compute_gae", "error_features", "mlp", "style_reward", "transition_features"]
