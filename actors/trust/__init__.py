"""Four-proof consensus, sans-IO: formats, proofs (work, time, stake, space), votes,
the quorum's decision, trust scores and the durable store. The validator and
detector actors drive it; nothing here imports pykka, trio or loguru."""
