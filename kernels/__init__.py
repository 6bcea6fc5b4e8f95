"""Fused lm_head kernels: per-token log-probs (kernels.logprob) and the GHPO policy loss (kernels.loss)."""
from kernels.logprob import fused_logprobs
from kernels.loss import policy_loss
