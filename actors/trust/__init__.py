"""Four-proof consensus, sans-IO; the validator and detector actors drive it, and
nothing here imports pykka, trio or loguru (tests/test_boundaries.py).

- ``formats``: every domain separator and framing, the request digest;
- ``work`` (PoWork), ``vdf`` (PoTime: Wesolowski in RSA-2048), ``stake`` (PoStake:
  records the stake authority signs in the HSM), ``space`` (PoSpace: scrypt-plotted
  blocks, a Merkle commitment, challenged openings); ``bignum``: PoTime's modular
  exponentiations (OpenSSL's BIGNUM through ctypes, GMP where libcrypto is missing);
- ``votes``: signed votes, the quorum's decision, equivocation evidence;
- ``scores``: validator and asset trust, the replay guard;
- ``store``: the durable state (SQLite); ``fields``: strict JSON reading; ``errors``;
- ``params``: the proofs' parameters from ``[trust]`` in the config, built in one place.
"""
