"""Run by test_client_replay.py in its own process (users.py imports locust, which patches gevent).

Sends one request per method given on the command line through the users' own HTTP session to
the server in argv[1] and prints, as JSON, whether each got an answer.
"""

from __future__ import annotations

import json
import sys

from locust.env import Environment

from harness.load.users import api_session


def main() -> None:
    base_url, methods = sys.argv[1], sys.argv[2:]
    env = Environment()
    outcome: dict[str, str] = {}
    for method in methods:
        session = api_session(base_url, env.events.request, None, None, read_timeout_s=5.0, connect_timeout_s=2.0)
        resp = session.request(method, "/api/v1/namespaces/kq/configmaps/x", json={"kind": "DeleteOptions"})
        error = getattr(resp, "error", None)
        outcome[method] = f"error {type(error).__name__}" if error else f"HTTP {resp.status_code}"
    print(json.dumps(outcome))


if __name__ == "__main__":
    main()
