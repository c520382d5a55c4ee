"""The TensorDict entry names that the envs write and collection, the learners and the trainer read.

Defined once here so that a rename cannot leave one side behind.
"""

# written by the envs (reset and step outputs)
OBSERVATION = "observation"  # the policy's input: every observation term, concatenated
CRITIC_OBSERVATION = "critic_observation"  # observation + privileged terms (asymmetric critic), optional
REWARD_TERMS = "reward_terms"  # sub-TensorDict: one (N,) tensor per reward term, before weighting
TRACKING_ERRORS = "tracking_errors"  # sub-TensorDict: one (N,) tensor per tracking error (SI units)
UNSTABLE = "unstable"  # (N,) bool: the world blew up this step (NaN / runaway) and scores 0
REWARD = "reward"
DONE, TERMINATED, TRUNCATED = "done", "terminated", "truncated"
RESET = "_reset"  # torchrl's partial-reset mask

# written by the learners and collection
ACTION = "action"
LOG_PROB = "log_prob"
VALUE = "value"
NEXT_VALUE = "next_value"
NEXT = "next"  # torchrl's sub-TensorDict of what a step produced (the true next observation)
