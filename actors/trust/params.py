"""The consensus's parameters from ``[trust]`` in the config, built in this one place:
the validators check with them, the detector publishes them (``get_trust_params``),
and an asset proves with what the detector published.

``vdf_modulus = ""`` means ``vdf.RSA_2048``; any other value is the decimal text of an
RSA modulus of unknown factors (the config loader checked it is digits of 1024+ bits).
The space parameters' ``min_blocks`` is the plot size the config asks for
(``space_blocks``): a verifier accepts no smaller plot.
"""

from __future__ import annotations

from trustchain.config import TrustConfig

from . import requests, vdf
from .requests import ConsensusParams


def vdf_modulus(config: TrustConfig) -> int:
    return int(config.vdf_modulus) if config.vdf_modulus else vdf.RSA_2048


def consensus_params(config: TrustConfig) -> ConsensusParams:
    """What every validator checks and every asset proves, from ``config`` (through
    ``requests.consensus_params``, which takes ``[trust]``'s fields one by one)."""
    return requests.consensus_params(
        work_bits=config.work_bits,
        vdf_t=config.vdf_t,
        vdf_modulus=config.vdf_modulus,
        min_stake=config.min_stake,
        space_cost=config.space_cost,
        space_blocks=config.space_blocks,
        space_challenges=config.space_challenges,
        epoch_s=config.epoch_s,
    )


def faults_tolerated(validators: int) -> int:
    """f: the Byzantine validators that N = ``validators`` tolerates, (N - 1) // 3."""
    return (validators - 1) // 3
