"""The base of every API filter set: a parameter is given once (unless it takes a list), an empty
value is the same as leaving it out, and timestamps are ISO 8601 brought to UTC before they reach
the database (PostgreSQL refuses offsets of 16 hours or more: that was a 500)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field

from settlement.models import Trade


class UtcIsoDateTimeField(forms.DateTimeField):
    """ISO 8601 (``Z`` or an offset; naive means the server's time zone), returned in UTC."""

    default_error_messages = {"invalid": "Enter an ISO 8601 timestamp such as 2026-11-24T14:30:00Z."}

    def to_python(self, value: Any) -> datetime | None:
        if value in self.empty_values:
            return None
        if isinstance(value, datetime):
            parsed = value
        else:
            try:
                parsed = datetime.fromisoformat(str(value).strip())
            except ValueError:
                raise ValidationError(self.error_messages["invalid"], code="invalid") from None
        try:
            if timezone.is_naive(parsed):
                parsed = timezone.make_aware(parsed)
            return parsed.astimezone(UTC)
        except (OverflowError, ValueError):
            raise ValidationError(self.error_messages["invalid"], code="invalid") from None


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    # django-filter documents replacing field_class; its stubs pin the type to the filter's default
    field_class = UtcIsoDateTimeField  # type: ignore[assignment]


BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1


@extend_schema_field({"type": "integer", "format": "int64", "minimum": BIGINT_MIN, "maximum": BIGINT_MAX})
class IntegerFilter(django_filters.NumberFilter):
    """A whole number within PostgreSQL's bigint range (a NumberFilter takes any decimal)."""

    # (a NumberFilter, so the schema and lookups stay numeric; the stubs pin field_class to DecimalField)
    field_class = forms.IntegerField  # type: ignore[assignment]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", BIGINT_MIN)
        kwargs.setdefault("max_value", BIGINT_MAX)
        super().__init__(*args, **kwargs)


class StrictFilterSet(django_filters.FilterSet):
    def __init__(self, data: Any = None, *args: Any, **kwargs: Any) -> None:
        self.repeated: list[str] = []
        if data is not None:
            data = data.copy()
            for key in list(data.keys()):
                values = [v for v in data.getlist(key) if v != ""]
                if values:
                    data.setlist(key, values)
                else:
                    del data[key]
        super().__init__(data, *args, **kwargs)
        if data is not None:
            self.repeated = [
                name
                for name, field in self.form.fields.items()
                if not isinstance(field, forms.MultipleChoiceField) and len(data.getlist(name)) > 1
            ]

    def is_valid(self) -> bool:
        return super().is_valid() and not self.repeated

    @property
    def errors(self) -> Any:
        errors = self.form.errors
        for name in self.repeated:
            if name not in errors:
                errors[name] = self.form.error_class(["Give this parameter at most once."])
        return errors


class TradeFilter(StrictFilterSet):
    source = django_filters.CharFilter()
    external_id = django_filters.CharFilter()
    settlement_date = django_filters.DateFilter()
    settlement_date__gte = django_filters.DateFilter(field_name="settlement_date", lookup_expr="gte")
    settlement_date__lte = django_filters.DateFilter(field_name="settlement_date", lookup_expr="lte")

    class Meta:
        model = Trade
        fields: list[str] = []
