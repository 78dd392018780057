"""Where the store puts the shared keys on a Redis Cluster, and which cluster errors are outages."""

from __future__ import annotations

import pytest
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, SlotNotCoveredError

from streamseg.errors import StoreUnavailable
from streamseg.features.cluster import BUCKETS, SLOTS, ClusterPlacement, Placement, slot_tags
from streamseg.features.keys import Keys
from streamseg.features.store import is_outage, unavailable_on_outage

KEYS = Keys("ss")
CUSTOMERS = [f"c{i:05d}" for i in range(2000)] + ["", "a{b}c", "émile", "x}y{"]


def slot(key: str) -> int:
    return key_slot(key.encode())


def test_every_slot__has_a_tag_that_hashes_to_it() -> None:
    tags = slot_tags()
    assert len(tags) == SLOTS
    assert all(slot(t) == s for s, t in enumerate(tags))


def test_a_customers_size_counter__shares_its_slot_so_the_membership_script_is_single_slot() -> None:
    place = ClusterPlacement(KEYS)
    assert all(slot(place.sizes(c)) == slot(KEYS.state(c)) for c in CUSTOMERS)


def test_held_and_scored_buckets__sit_in_their_customers_slot_range_and_cover_all() -> None:
    place = ClusterPlacement(KEYS)
    width = SLOTS // BUCKETS
    for c in CUSTOMERS:
        for key in (place.scored(c), place.held(c)):
            assert slot(key) == slot(KEYS.state(c)) // width * width
    assert {place.scored(c) for c in CUSTOMERS} == set(place.all_scored())
    assert {place.held(c) for c in CUSTOMERS} == set(place.all_held())
    assert len({slot(k) for k in place.all_scored()}) == BUCKETS


def test_single_redis__keeps_its_one_key_each() -> None:
    place = Placement(KEYS)
    assert {place.sizes(c) for c in CUSTOMERS} == {KEYS.segment_sizes()}
    assert place.all_scored() == [KEYS.scored()] and place.all_held() == [KEYS.held()]


@pytest.mark.parametrize("exc", [
    RedisClusterException("Redis Cluster cannot be connected. Please provide at least one reachable node"),
    RedisClusterException("All slots are not covered after query all startup_nodes. 5461 of 16384"),
    SlotNotCoveredError('Slot "12" not covered by the cluster.'),
])
def test_a_cluster_out_of_reach__is_an_outage(exc: Exception) -> None:
    assert is_outage(exc)
    with pytest.raises(StoreUnavailable), unavailable_on_outage("applying events"):
        raise exc


def test_a_cross_slot_request__is_a_bug_not_an_outage() -> None:
    exc = RedisClusterException("EVALSHA - all keys must map to the same key slot")
    assert not is_outage(exc)
    with pytest.raises(RedisClusterException), unavailable_on_outage("applying events"):
        raise exc
