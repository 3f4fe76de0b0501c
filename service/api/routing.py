"""URL rules whose builders are compiled when first used, not when the rule is added.

Werkzeug compiles two URL builders for every rule as it is added (Python source generated, parsed and
compiled: the code `url_for` runs). That was most of the cost of building the app (about 35 of 41 ms of
CPU for some 70 rules), paid by every process that serves and every app a test builds, while only the
console's handful of redirect targets ever build a URL. Matching a request does not use the builders.
"""
from __future__ import annotations

from werkzeug.routing import Rule


class LazyBuildRule(Rule):
    """A rule whose URL builders are compiled by the first `url_for` that needs one, then kept on the rule."""

    def _compile_builder(self, append_unknown: bool = True):
        compile_now = super()._compile_builder
        attribute = "_build_unknown" if append_unknown else "_build"

        def build_then_keep(rule, /, **values):  # positional: a URL variable may be called `rule`
            # Two threads may both compile the first time: the same builder, one of them kept.
            compiled = compile_now(append_unknown).__get__(rule, None)
            setattr(rule, attribute, compiled)
            return compiled(**values)

        return build_then_keep
