"""Output record schemas, versioned with their topic (``.v1``).

>>> rec = SegmentUpdate(customer_id="c1", segment_id=2, segment_name="Bargain hunters",
...     previous_segment_id=None, distance=0.5, model_version=1,
...     event_ts="2026-01-01T00:00:00.000Z", processed_ts="2026-01-01T00:00:00.004Z")
>>> sorted(rec.model_dump())[:3]
['customer_id', 'distance', 'event_ts']
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field


class Reason(BaseModel):
    """One feature that moved a customer: its value and the two segments' means (original units)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    feature: str
    value: float
    previous_mean: float | None  # None on a first assignment
    new_mean: float


class CustomerValueRecord(BaseModel):
    """The customer-value model's view of a customer (streamseg.value; docs/value.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    p_alive: float = Field(description="BG/NBD probability the customer is still active (1 "
                           "without repeat purchases: the model drops customers only after one)")
    churn_risk: float = Field(description="probability of no purchase in the next horizon_days")
    expected_purchases: float = Field(description="expected purchase days in the next horizon_days")
    horizon_days: float = Field(description="STREAMSEG_VALUE_HORIZON_DAYS")
    lifetime_value: float = Field(description="expected spend over the next horizon_days, in "
                                  "currency (not discounted)")
    currency: str = Field(description="the reporting currency")
    risk_band: str = Field(description="churn_risk's band (STREAMSEG_VALUE_RISK_BANDS)")
    params_version: int = Field(description="version of the fitted parameters scored with")


class SegmentUpdate(BaseModel):
    """streamseg.segment-updates.v1: a first assignment, a membership change, or a risk-band change.

    A risk-band change alone keeps ``segment_id == previous_segment_id``; ``risk_band`` and
    ``previous_risk_band`` then differ. ``value`` is null until the value model was fitted.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    customer_id: str
    segment_id: int
    segment_name: str
    previous_segment_id: int | None
    distance: float
    model_version: int
    event_ts: str
    processed_ts: str
    reasons: list[Reason] = []
    risk_band: str | None = None  # the customer's churn-risk band now (None: no value model yet)
    previous_risk_band: str | None = None  # the band last published (None: none yet)
    value: CustomerValueRecord | None = None

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump())


class SegmentProfile(BaseModel):
    """What a segment looks like, in original feature units and against the population."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    segment_id: int
    name: str
    size: int
    share: float
    means: dict[str, float]
    zscores: dict[str, float]  # (segment mean - population mean) / population std
    top_features: list[str]  # most distinguishing first
    monetary_mean: float  # mean 30-day spend
    model_version: int


Lifecycle = Literal["born", "active", "merged", "split", "retired"]
Flag = Literal["small", "weak"]


class SegmentValidation(BaseModel):
    """How well a segment holds together in the leader's sample (streamseg.segmenting.validation)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_version: int
    previous_version: int | None  # the version stability compares with (None: not known)
    silhouette: float | None  # mean silhouette of its sampled members (None: too few segments)
    model_silhouette: float | None  # mean silhouette of every sampled customer
    members: int  # sampled customers nearest to its centre
    share: float  # members / sampled customers
    stability: float | None  # share of the previous version's members kept (None: born now)
    flags: list[Flag] = []  # small: share < segment_min_share; weak: silhouette < segment_min_silhouette


class KScoreRecord(BaseModel):
    """One k the leader tried under ``STREAMSEG_N_SEGMENTS=auto``, and how it scored."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    k: int
    silhouette: float  # scikit-learn's, on a sub-sample of the refit's sample
    stability: float  # the least reproducible segment's mean Jaccard over bootstrap refits
    eligible: bool  # stable enough, silhouette within the tolerance of the best


class KSelection(BaseModel):
    """The leader's latest choice of k (``STREAMSEG_N_SEGMENTS=auto``; docs/model.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    k: int  # the k the refit fitted (the model's, once adopted)
    previous_k: int  # the model's k before this refit
    preferred_k: int | None  # the largest eligible k of this refit (None: no k was)
    evidence: int  # consecutive refits that argued for a change, not yet acted on
    patience: int  # refits that must argue before k changes
    sample: int  # customers in the refit's sample
    evaluated_ts: str
    scores: list[KScoreRecord]


class SegmentValue(BaseModel):
    """What a segment's customers are worth and how many may leave (streamseg.value; docs/value.md).

    Means over the leader's sample of the segment's members; totals scale the sample's mean to
    the segment's live size.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    customers: int  # live members (the segment's size when measured)
    sampled: int  # members in the leader's sample the means come from
    mean_churn_risk: float  # probability of no purchase within horizon_days
    high_risk_share: float  # share in the highest risk band
    mean_expected_purchases: float  # over horizon_days
    mean_lifetime_value: float  # over horizon_days, in currency
    total_lifetime_value: float  # mean_lifetime_value * customers
    value_at_risk: float  # net spend to date of the high-risk members, scaled to customers
    net_inflow: int | None  # members now minus at the previous measurement (None: first one)
    window_s: float | None  # seconds (event clock) since that previous measurement
    horizon_days: float
    currency: str
    params_version: int


class CatalogEntry(BaseModel):
    """streamseg.segments.v1 (compacted, key = segment id): a segment's latest state."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    segment_id: int
    status: Lifecycle
    model_version: int
    name: str
    profile: SegmentProfile | None  # None once retired
    name_reason: str = ""  # why the segment has its name (streamseg.segmenting.naming)
    related: list[int] = []  # merged into / split from these segment ids
    updated_ts: str
    validation: SegmentValidation | None = None  # live segments, once the leader measured them
    k_selection: KSelection | None = None  # how k was chosen (auto only; None with a fixed k)
    value: SegmentValue | None = None  # live segments, once the value model was fitted

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump())


class ErasureAudit(BaseModel):
    """streamseg.audit.v1: who erased which customer's data, when, and what was removed.

    The audit trail itself names the customer: GDPR expects a controller to be
    able to show that an erasure happened.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: Literal["erase"] = "erase"
    customer_id: str
    actor: str  # API token name or "cli:<user>"
    via: Literal["http", "cli"]
    at: str
    removed_keys: list[str]  # Redis keys that existed and were deleted
    had_membership: bool
    segment_id: int | None  # the membership that was removed (its size was decremented)
    tombstoned_topics: list[str]

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump())


#: Bytes of the original message a dead letter carries by default (``STREAMSEG_DLQ_PREFIX_BYTES``).
DLQ_PREFIX_BYTES = 4096
#: Longest ``detail`` and ``source_key`` (in characters) a dead letter carries.
DLQ_TEXT_CHARS = 1000


def dead_letter_bound(prefix_bytes: int = DLQ_PREFIX_BYTES) -> int:
    """The most bytes one serialized dead letter can take, whatever the input.

    The base64 prefix, plus ``detail`` and ``source_key`` (each at most
    DLQ_TEXT_CHARS characters, JSON-escaped at worst 6 bytes each: ``\\uXXXX``), plus
    4 KiB for the fixed fields. Far below any broker's smallest message limit
    for the default prefix, so publishing a dead letter never fails for size.

    >>> dead_letter_bound(4096)
    21560
    """
    return -(-prefix_bytes // 3) * 4 + 2 * 6 * DLQ_TEXT_CHARS + 4096


class DeadLetter(BaseModel):
    """streamseg.dlq.v1: an input the engine refused, where it came from and what it was.

    The original bytes are carried up to a bounded prefix (``original_b64``, the
    first ``prefix_bytes``), with the full size and SHA-256 of the value, so a
    dead letter always fits in a Kafka record however large the input was
    (:func:`dead_letter_bound`); ``original_truncated`` says whether the prefix is
    all of it. The record at ``source_topic``/``source_partition``/``source_offset``
    holds the rest for as long as the topic's retention keeps it.

    >>> dl = DeadLetter.build(reason="too_large", detail="big", topic="t", partition=0, offset=7,
    ...                       key=None, original=b"x" * 10, prefix_bytes=4)
    >>> dl.original, dl.original_size, dl.original_truncated
    (b'xxxx', 10, True)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: str
    detail: str
    source_topic: str
    source_partition: int
    source_offset: int
    source_key: str | None
    index: int | None
    customer_id: str | None
    original_b64: str  # the first bytes of the value (all of it unless original_truncated)
    original_size: int | None = None  # bytes of the whole value; None: never read (see ingest)
    original_sha256: str | None = None  # hex digest of the whole value; None: never read
    original_truncated: bool = False
    dead_lettered_at: str

    @classmethod
    def build(
        cls, *, reason: str, detail: str, topic: str, partition: int, offset: int,
        key: bytes | None, original: bytes | None, index: int | None = None,
        customer_id: str | None = None, prefix_bytes: int = DLQ_PREFIX_BYTES,
        unread: bool = False, sha256: str | None = None,
    ) -> DeadLetter:
        """A dead letter; ``unread``: the value never reached us (size and digest unknown);
        ``sha256``: the value's digest when the caller has it already."""
        value = original or b""
        return cls(
            reason=reason, detail=detail[:DLQ_TEXT_CHARS], source_topic=topic,
            source_partition=partition, source_offset=offset,
            source_key=key[:DLQ_TEXT_CHARS].decode("utf-8", "replace") if key else None,
            index=index, customer_id=customer_id,
            original_b64=base64.b64encode(value[:prefix_bytes]).decode(),
            original_size=None if unread else len(value),
            original_sha256=None if unread else sha256 or hashlib.sha256(value).hexdigest(),
            original_truncated=unread or len(value) > prefix_bytes, dead_lettered_at=now_iso(),
        )

    @property
    def original(self) -> bytes:
        """The bytes carried: the whole value unless ``original_truncated``."""
        return base64.b64decode(self.original_b64)

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump())


def now_iso() -> str:
    return datetime.now(tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
