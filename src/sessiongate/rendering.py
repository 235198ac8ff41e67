"""Jinja2 templates shipped in `sessiongate/templates`, overridable one file at a time from
SESSIONGATE_TEMPLATES_DIR (the vendor's branding). Emails get their CSS inlined (css-inline):
mail clients drop `<style>`."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import css_inline
import jinja2

from sessiongate.domain.money import format_money


def _money(minor: Any, currency: Any) -> str:
    return format_money(int(minor or 0), str(currency or "USD"))


def _when(raw: Any, fmt: str = "%Y-%m-%d %H:%M UTC") -> str:
    if not raw:
        return ""
    try:
        return datetime.fromisoformat(str(raw)).astimezone(UTC).strftime(fmt)
    except ValueError:
        return str(raw)


def _pct(ratio: Any) -> str:
    return "n/a" if ratio is None else f"{float(ratio) * 100:.0f}%"


def _delta(this: Any, previous: Any) -> str:
    d = int(this or 0) - int(previous or 0)
    return "no change" if d == 0 else f"{d:+d}"


class Renderer:
    def __init__(self, templates_dir: str = "") -> None:
        loaders: list[jinja2.BaseLoader] = []
        if templates_dir:
            loaders.append(jinja2.FileSystemLoader(templates_dir))
        loaders.append(jinja2.PackageLoader("sessiongate", "templates"))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=jinja2.select_autoescape(["html"]),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(money=_money, when=_when, pct=_pct)
        self.env.globals.update(delta=_delta)
        self._inliner = css_inline.CSSInliner(keep_style_tags=False)

    def page(self, name: str, **ctx: Any) -> str:
        return self.env.get_template(name).render(**ctx)

    def email(self, name: str, **ctx: Any) -> tuple[str, str]:
        """(HTML with inlined CSS, plain text) of `<name>.html` and `<name>.txt`."""
        html = self._inliner.inline(self.env.get_template(f"{name}.html").render(**ctx))
        text = self.env.get_template(f"{name}.txt").render(**ctx)
        return html, text.strip() + "\n"


@lru_cache(maxsize=8)
def renderer(templates_dir: str = "") -> Renderer:
    return Renderer(templates_dir)
