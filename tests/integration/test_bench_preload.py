"""The bench's full-speed sends end on a round's end when asked, envelopes too (real Kafka)."""

from __future__ import annotations

import pytest

from streamseg.bench.load import Cursor, Pool, envelopes, preload
from streamseg.settings import Settings
from streamseg.topics import ensure_topics

pytestmark = pytest.mark.integration


async def test_preload__to_a_rounds_end_sends_every_open_envelope_of_it(settings: Settings) -> None:
    # an envelope subject's cursor counts events still in open envelopes: a send sized by the
    # count stopped inside the round's closing flush, and the settling loop sent nothing again
    await ensure_topics(settings)
    pool = Pool.simulate(30, days=7.0, seed=3)
    cursor = Cursor(lanes=2)
    records = envelopes(settings, pool, 50, cursor=cursor)
    first = await preload(settings, records, 1, ends=cursor)
    assert cursor.pass_sent and first.events == cursor.taken == 2 * len(pool)
    second = await preload(settings, records, 1, ends=cursor)  # the next round, whole
    assert cursor.pass_sent and second.events == 2 * len(pool) and len(cursor.rounds) == 2
    assert first.messages > 2 * len(pool) // 50  # the closing flush sent shorter envelopes too
