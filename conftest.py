"""Root conftest: this repository's own suites use the kubequake plugin exactly as users get it.

An installed kubequake registers the plugin through its pytest11 entry point; only a checkout
used without installing needs it loaded from here (loading it twice is an error in pytest).
"""

from importlib.metadata import entry_points

if not any(ep.name == "kubequake" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["harness.pytest_plugin"]
