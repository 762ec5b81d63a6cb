"""Template step: render a Jinja text, inline or from ``templates/``, into a string.

```yaml
- id: brief
  type: template
  template: |
    A << inputs.product >> on a marble table, << inputs.mood >> light.
    <% include "brand_style.j2" %>

- id: caption
  type: template
  file: caption.j2          # a file under templates/, rendered with the same scope
```

Output: the rendered text (``<<brief.output>>``).
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, ValidationInfo, field_validator, model_validator

from fetchflow.step import RuleViolation, Step, StepConfig, StepContext, deferred
from fetchflow.templating import to_text


class TemplateConfig(StepConfig):
    """Fields of a ``template`` step: exactly one of ``template`` and ``file``."""

    template: str | None = Field(None, description="Inline Jinja text, rendered as the output.")
    file: str | None = Field(
        None, description="A template file under templates/, rendered as the output."
    )

    @field_validator("template", mode="before")
    @classmethod
    def _values_read_as_text(cls, value: object) -> object:
        # A template that is exactly one expression renders to a native value; this step's
        # output is text, so lists, numbers and mappings read as JSON.
        return value if value is None or isinstance(value, str) else to_text(value)

    @model_validator(mode="after")
    def _exactly_one_source(self, info: ValidationInfo) -> Self:
        if deferred(info, "template", "file"):
            return self
        if (self.template is None) == (self.file is None):
            found = "both" if self.template is not None else "neither"
            raise RuleViolation(
                f"give exactly one of template and file, got {found}",
                fields=("template", "file"),
                hint="write the text inline with template: |, or name a file under "
                "templates/ with file:",
            )
        return self


class TemplateStep(Step[TemplateConfig, str]):
    """Render a Jinja template (inline or a file under templates/) into text."""

    config_model = TemplateConfig
    output_type = str
    template_file_fields = ("file",)

    def run(self, config: TemplateConfig, ctx: StepContext) -> str:
        """Return the rendered text (inline templates were rendered by the engine)."""
        if config.file is not None:
            return ctx.render_file(config.file)
        return config.template or ""
