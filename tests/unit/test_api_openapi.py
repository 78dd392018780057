"""The OpenAPI document: valid, generated from the models, covering every route; bodies match it."""

from __future__ import annotations

import json

from openapi_spec_validator import validate

from streamseg.api import openapi
from streamseg.api.lookup import customer_body, segment_body, segments_body
from streamseg.app import create_app
from streamseg.features.registry import FEATURES
from streamseg.publish.records import CatalogEntry, ErasureAudit, SegmentProfile
from streamseg.settings import Settings
from streamseg.timeunits import DAY_MS as DAY
from tests.openapi_check import assert_matches_openapi, document


def test_shipped_document__is_what_the_models_generate() -> None:
    shipped = openapi.PATH.read_text()
    assert shipped == openapi.render(), "run: python -m streamseg.api.openapi --write"


def test_document__is_a_valid_openapi_3_1_spec() -> None:
    validate(json.loads(openapi.PATH.read_text()))


def test_every_route_the_worker_serves__is_documented_and_nothing_more() -> None:
    app = create_app(Settings(web_port=6999)).app
    served = {(r.resource.canonical, r.method.lower()) for r in app.web.web_app.router.routes()
              if r.method != "HEAD"}
    documented = {(path, method) for path, ops in document()["paths"].items()
                  for method in ops if method != "parameters"}
    assert served == documented


def test_customer_features_schema__lists_every_registered_feature() -> None:
    schema = document()["components"]["schemas"]["Features"]
    assert set(schema["required"]) == {f.name for f in FEATURES}


def test_customer_body__matches_the_schema_assigned_or_not() -> None:
    state = {"first_ts": 0.0, "last_ts": 10 * DAY, "n_events": 3.0, "n_orders": 1.0,
             "sum_amount": 40.0, "seg": 1.0, "seg_dist": 0.7, "seg_version": 2.0,
             "seg_why": json.dumps([{"feature": "monetary_30d", "value": 40.0,
                                     "previous_mean": 12.0, "new_mean": 55.0}])}
    body = customer_body("c1", state, names={1: "Big spenders"}, now_ms=12 * DAY)
    assert_matches_openapi("/v1/customers/{customer_id}", "get", 200, body)
    assert body["segment_name"] == "Big spenders" and body["reasons"][0]["new_mean"] == 55.0
    assert body["features_as_of"].startswith("1970-01-13") and body["features"]["tenure_days"] == 12.0

    warming_up = {k: v for k, v in state.items() if not k.startswith("seg")}
    body = customer_body("c1", warming_up, names={}, now_ms=12 * DAY)
    assert_matches_openapi("/v1/customers/{customer_id}", "get", 200, body)
    assert (body["segment_id"], body["segment_name"], body["reasons"]) == (None, None, [])


def test_customer_body__lists_the_stored_changes_newest_first_with_names() -> None:
    state = {"last_ts": 0.0, "seg": 2.0, "seg_version": 3.0}
    stored = [b'[864000000,1,2,3,"monetary_30d"]', b"not json", b'["x",1,2,3,null]',
              b"[0,null,1,2,null]"]
    body = customer_body("c1", state, names={2: "Big spenders"}, now_ms=0.0, history=stored)
    assert_matches_openapi("/v1/customers/{customer_id}", "get", 200, body)
    assert body["history"] == [  # the unreadable entries left out
        {"ts_ms": 864000000, "from_segment": 1, "to_segment": 2, "model_version": 3,
         "cause": "monetary_30d", "from_segment_name": "Segment 1",
         "to_segment_name": "Big spenders"},
        {"ts_ms": 0, "from_segment": None, "to_segment": 1, "model_version": 2, "cause": None,
         "from_segment_name": None, "to_segment_name": "Segment 1"}]


def test_unreadable_reasons__are_left_out_not_an_error() -> None:
    for bad in ["not json", '[{"feature": "x"}]', "42"]:
        body = customer_body("c1", {"last_ts": 0.0, "seg": 1.0, "seg_why": bad}, names={},
                             now_ms=0.0)
        assert body["reasons"] == [] and body["segment_name"] == "Segment 1"


def entry(sid: int, name: str, size: int = 10) -> CatalogEntry:
    profile = SegmentProfile(segment_id=sid, name=name, size=size, share=0.25,
                             means={"monetary_30d": 120.0}, zscores={"monetary_30d": 1.8},
                             top_features=["monetary_30d"], monetary_mean=120.0, model_version=3)
    return CatalogEntry(segment_id=sid, status="active", model_version=3, name=name,
                        profile=profile, related=[], updated_ts="2026-01-01T00:00:00.000Z")


def test_segment_bodies__carry_the_catalog_entry_and_the_live_size() -> None:
    catalog = {2: entry(2, "Big spenders"), 0: entry(0, "Browsers")}
    body = segments_body(catalog, {2: 41}, model_version=3)
    assert_matches_openapi("/v1/segments", "get", 200, body)
    assert [s["segment_id"] for s in body["segments"]] == [0, 2]
    assert [s["size"] for s in body["segments"]] == [0, 41]
    one = segment_body(catalog[2], 41)
    assert_matches_openapi("/v1/segments/{segment_id}", "get", 200, one)
    assert one["profile"]["top_features"] == ["monetary_30d"]


def test_erasure_audit__is_the_documented_delete_answer() -> None:
    audit = ErasureAudit(customer_id="c1", actor="ops", via="http", at="2026-01-01T00:00:00.000Z",
                         removed_keys=["ss:{c1}:f"], had_membership=True, segment_id=2,
                         tombstoned_topics=["streamseg.segment-updates.v1"])
    assert_matches_openapi("/v1/customers/{customer_id}", "delete", 200, audit.model_dump())
