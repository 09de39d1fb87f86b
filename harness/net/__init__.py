"""The bottom layer's network helpers: TLS client material, HTTP sessions and probes, a small
Kubernetes API client, official client objects, and waits with deadlines.

Everything above (providers, faults, checks, load, scenarios) builds on these, so this package
imports nothing of the harness but `harness.errors`; its __init__ imports nothing at all, so a
Locust process that needs only the API client does not load the rest.
"""
