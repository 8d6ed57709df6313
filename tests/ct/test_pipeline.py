"""TileLog's sans-IO write path: stage (what to sign), commit (make it durable), pipelined."""

from __future__ import annotations

import pytest
from pymerkle import InmemoryTree

from trustchain.actors.ct import LogUnavailable, SignatureError, verify_sct

from .conftest import LogKey, fake_entries


def sign_all(log_key: LogKey, staged) -> list[bytes]:
    return [log_key.sign(data) for data in staged.to_sign]


def test_stage_asks_for_one_sct_per_entry_and_one_tree_head(open_log) -> None:
    log = open_log()
    staged = log.stage(fake_entries(0, 4), 1_000)
    assert len(staged.to_sign) == 5 and staged.publishes
    assert log.size == 0 and log.staged_batches == 1  # nothing is committed before commit


def test_a_batch_staged_on_a_staged_batch_commits_after_it_in_order(open_log, log_key) -> None:
    log = open_log()
    first = log.stage(fake_entries(0, 3), 1_000)
    second = log.stage(fake_entries(3, 2), 1_000)  # built on `first`, not on the empty tree
    assert [r[0] for r in second.results] == [3, 4]
    with pytest.raises(LogUnavailable, match="in the order"):
        log.commit(second, sign_all(log_key, second))
    heads = []  # the refusal changed nothing: commit them in order now
    for staged in (first, second):
        results = log.commit(staged, sign_all(log_key, staged))
        heads.append(log.sth())
        entries = fake_entries(results[0].leaf_index, len(results))
        for result, entry in zip(results, entries, strict=True):
            verify_sct(result.sct, log_key.public, entry.entry_type, entry.signed_entry)
    assert [h.tree_size for h in heads] == [3, 5]
    reference = InmemoryTree(algorithm="sha256")
    for leaf in log.entries(0, 5):
        reference.append_entry(leaf.merkle_tree_leaf())
    assert log.root == reference.get_root(5)


def test_pipelined_batches_across_a_full_tile_match_one_append(open_log, log_key, tmp_path) -> None:
    entries = fake_entries(0, 700)
    log = open_log()
    staged = [log.stage(entries[i : i + 100], 1_000) for i in range(0, 700, 100)]
    for batch in staged:
        log.commit(batch, sign_all(log_key, batch))
    assert log.size == 700 and log.staged_batches == 0
    assert log.inclusion_proof(300, 700) and log.consistency_proof(256, 700)
    reference = InmemoryTree(algorithm="sha256")
    for leaf in log.entries(0, 700):
        reference.append_entry(leaf.merkle_tree_leaf())
    assert log.root == reference.get_root(log.size)


def test_an_entry_staged_twice_before_either_commits_gets_one_index(open_log, log_key) -> None:
    log = open_log()
    entries = fake_entries(0, 2)
    first = log.stage(entries, 1_000)
    again = log.stage(entries[1:], 1_500)
    assert again.results == ((1, 1_000, True),) and not again.publishes
    assert len(again.to_sign) == 1  # its SCT only: no new tree head
    for staged in (first, again):
        log.commit(staged, sign_all(log_key, staged))
    assert log.size == 2


def test_a_bad_tree_head_signature_is_refused_and_voids_the_instance(open_log, log_key) -> None:
    log = open_log()
    staged = log.stage(fake_entries(0, 2), 1_000)
    signatures = sign_all(log_key, staged)
    signatures[-1] = log_key.sign(b"something else")
    with pytest.raises(SignatureError):
        log.commit(staged, signatures)
    assert log.size == 0
    with pytest.raises(LogUnavailable):
        log.stage(fake_entries(2, 1), 2_000)
    assert open_log().size == 0  # nothing durable: reopening finds the old tree


def test_a_refresh_is_not_staged_while_batches_are_out(open_log, log_key) -> None:
    log = open_log()
    staged = log.stage(fake_entries(0, 1), 1_000)
    assert log.stage_refresh(5_000) is None
    log.commit(staged, sign_all(log_key, staged))
    refresh = log.stage_refresh(5_000)
    assert refresh is not None and len(refresh.to_sign) == 1
    log.commit(refresh, sign_all(log_key, refresh))
    assert log.sth().timestamp == 5_000 and log.size == 1
    assert log.stage_refresh(5_000) is None  # not past the newest head
