"""``streamseg bench``: throughput, latency and memory of the real worker, against baselines.

Everything runs on one embedded broker and Valkey (:class:`~streamseg.devstack.DevStack`)
in one invocation, so the figures that matter are ratios that survive a noisy
machine: the engine against a bare Faust agent that only decodes and acks (the
framework's per-message ceiling) and against a naive engine that makes one Redis
round trip and one River learn/predict per event.
"""
