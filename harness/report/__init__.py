"""The only code that talks to Allure: steps, attachments, labels.

Everything else reports through these functions, so the harness runs (and its unit tests pass)
without an Allure run in progress: outside an allure-pytest session the calls are no-ops.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import allure


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    with allure.step(title):
        yield


def attach_text(name: str, text: str) -> None:
    allure.attach(text, name=name, attachment_type=allure.attachment_type.TEXT)


def attach_json(name: str, data: Any) -> None:
    allure.attach(json.dumps(data, indent=2, default=str), name=name, attachment_type=allure.attachment_type.JSON)


def attach_png(name: str, png: bytes) -> None:
    allure.attach(png, name=name, attachment_type=allure.attachment_type.PNG)


def attach_svg(name: str, svg: str) -> None:
    allure.attach(svg, name=name, attachment_type=allure.attachment_type.SVG)


def label_scenario(epic: str, feature: str, story: str, severity: str = "critical", tags: list[str] | None = None) -> None:
    allure.dynamic.epic(epic)
    allure.dynamic.feature(feature)
    allure.dynamic.story(story)
    allure.dynamic.severity(severity)
    for tag in tags or []:
        allure.dynamic.tag(tag)
