from django import forms

from tenants.projects.config import KEYS, display
from tenants.projects.models import ProjectRole
from tenants.validators import validate_project_slug


class ProjectCreateForm(forms.Form):
    # The slug's pattern is checked here too, so a bad slug is reported with the form's other
    # errors at once (the service checks it again, with the namespace it makes).
    slug = forms.CharField(max_length=62, validators=[validate_project_slug],
                           help_text="Lowercase letters, digits and hyphens. The namespace is <organization>-<slug>.")
    display_name = forms.CharField(max_length=200, required=False)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)


class ProjectEditForm(forms.Form):
    display_name = forms.CharField(max_length=200, required=False)
    description = forms.CharField(max_length=2000, required=False, widget=forms.Textarea(attrs={"rows": 3}))


class ConfigOverridesForm(forms.Form):
    """One field per setting; empty means "inherit"."""

    def __init__(self, *args, effective: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self.effective = effective
        for key, spec in KEYS.items():
            entry = effective[key]
            value = entry["value"]
            self.fields[key] = forms.CharField(
                required=False, label=key, help_text=spec.help,
                widget=forms.TextInput(attrs={
                    "placeholder": display(value),
                }),
            )
            if entry["source"] == "project":
                # The stored override, even when a ceiling brings it down (it is kept for the record).
                stored = entry["clamped_from"] if entry["clamped_from"] is not None else value
                self.initial[key] = display(stored)

    def overrides(self) -> dict:
        result = {}
        for key, spec in KEYS.items():
            raw = (self.cleaned_data.get(key) or "").strip()
            if not raw:
                continue
            result[key] = [v.strip() for v in raw.split(",") if v.strip()] if spec.kind != "quantity" else raw
        return result


class GrantForm(forms.Form):
    kind = forms.ChoiceField(choices=[("user", "Person"), ("group", "Group")], initial="user", label="Type")
    name = forms.CharField(max_length=255, strip=True, label="Username or group",
                           help_text="A member's username, or a group as your identity provider names it "
                                     "(developers, /org/team, system:authenticated).")
    role = forms.ChoiceField(choices=ProjectRole.choices, initial=ProjectRole.VIEW)


class GrantRoleForm(forms.Form):
    role = forms.ChoiceField(choices=ProjectRole.choices)


class AccessKeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What uses it, e.g. ci-deploy.")
    role = forms.ChoiceField(choices=ProjectRole.choices, initial=ProjectRole.VIEW)
    expires_in_days = forms.IntegerField(min_value=1, initial=90, label="Expires in (days)")

    def __init__(self, *args, max_days: int = 365, **kwargs):
        """The page asks in days, so its limits are in days too (the API's are in seconds)."""
        super().__init__(*args, **kwargs)
        from django.core.validators import MaxValueValidator

        field = self.fields["expires_in_days"]
        field.max_value = max_days
        field.validators.append(MaxValueValidator(max_days, f"At most {max_days} days (this organization's limit)."))
        field.widget.attrs.update(max=str(max_days), min="1")
        field.initial = min(90, max_days)
        field.help_text = f"1 to {max_days} days."


class DefaultsForm(forms.Form):
    """The organization's defaults, one field per setting (empty: the platform's), and a lock
    box per setting."""

    def __init__(self, *args, defaults: dict, locked: list, **kwargs):
        super().__init__(*args, **kwargs)
        for key, spec in KEYS.items():
            value = defaults.get(key)
            self.fields[key] = forms.CharField(required=False, label=key, help_text=spec.help)
            self.fields[f"lock:{key}"] = forms.BooleanField(required=False, label=f"Lock {key}")
            if value is not None:
                self.initial[key] = display(value)
            self.initial[f"lock:{key}"] = key in locked

    def defaults(self) -> dict:
        result = {}
        for key, spec in KEYS.items():
            raw = (self.cleaned_data.get(key) or "").strip()
            if raw:
                result[key] = [v.strip() for v in raw.split(",") if v.strip()] if spec.kind != "quantity" else raw
        return result

    def locked_keys(self) -> list:
        return [key for key in KEYS if self.cleaned_data.get(f"lock:{key}")]
