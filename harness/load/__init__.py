"""Locust traffic against the Kubernetes API through the LB, and what clients saw.

users.py / locustfile.py run inside Locust processes (gevent-patched); runner.py owns those
processes; records.py is the JSON-lines format between them and the harness; timeline.py,
ledger.py, watches.py and slo.py turn the records into verdicts; traffic.py ties it together.
This package's __init__ imports nothing, so Locust processes load only what they use.
"""
