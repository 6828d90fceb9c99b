"""The sessions pages' forms. They only turn what people type (one repository or variable a line)
into what the service takes; the service (sessions/services.py) validates it and names the field
of any error, which `SessionStartForm.at_fields` puts back on the field it came from."""

from __future__ import annotations

import re
import secrets

from django import forms
from django.forms.utils import ErrorDict

from portal.errors import PierError

# The service's names for list entries: repos[0].url, env[2].name.
_ENTRY = re.compile(r"^(repos|env)\[(\d+)\](?:\.\w+)?$")


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:]


class SessionStartForm(forms.Form):
    prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 6}), strip=False,
                             help_text="What the agent should do.")
    display_name = forms.CharField(max_length=200, required=False, help_text="A title for the list (optional).")
    model = forms.CharField(max_length=200, required=False, help_text="Empty: the runner's default model.")
    temperature = forms.FloatField(required=False, widget=forms.NumberInput(attrs={"step": "0.1", "min": "0", "max": "2"}),
                                   help_text="0 to 2; empty: the model's default.")
    max_tokens = forms.IntegerField(required=False, widget=forms.NumberInput(attrs={"min": "1"}),
                                    label="Max tokens", help_text="Empty: the model's default.")
    timeout_seconds = forms.IntegerField(required=False, label="Timeout (seconds)")
    repos = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, label="Repositories",
                            help_text="One a line: a git URL, then a branch if not the default "
                                      "(https://git.example.com/team/app.git main).")
    env = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, label="Environment",
                          help_text="One a line: NAME=value. Nothing secret: the project's runner secret is for secrets.")
    # Drawn when the form is shown: a second submission of the same form (a double click, a
    # resubmitted POST) gets the first session back instead of starting another agent.
    idempotency_key = forms.CharField(widget=forms.HiddenInput, required=False, max_length=64)

    def __init__(self, *args, min_timeout: int, max_timeout: int, default_timeout: int, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["timeout_seconds"]
        field.help_text = f"{min_timeout} to {max_timeout} seconds; empty: {default_timeout}."
        field.widget.attrs.update(min=str(min_timeout), max=str(max_timeout), placeholder=str(default_timeout))
        if not self.is_bound:
            self.initial["idempotency_key"] = secrets.token_urlsafe(16)
        # The line each entry came from, to name it in an error ("Line 3: …").
        self.lines: dict[str, list[int]] = {"repos": [], "env": []}

    def clean_repos(self) -> list[dict]:
        repos, self.lines["repos"] = [], []
        for number, line in enumerate(self.cleaned_data["repos"].splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) > 2:
                raise forms.ValidationError(f"Line {number}: give a URL and, if needed, one branch, separated by a space.")
            repos.append({"url": parts[0], **({"branch": parts[1]} if len(parts) == 2 else {})})
            self.lines["repos"].append(number)
        return repos

    def clean_env(self) -> list[dict]:
        env, self.lines["env"] = [], []
        for number, line in enumerate(self.cleaned_data["env"].splitlines(), start=1):
            if not line.strip():
                continue
            name, equals, value = line.partition("=")
            if not equals:
                raise forms.ValidationError(f"Line {number}: write NAME=value.")
            env.append({"name": name.strip(), "value": value})
            self.lines["env"].append(number)
        return env

    def with_new_key(self) -> dict:
        """What was sent, with a new idempotency key (to send the form again as a new start)."""
        data = self.data.copy()
        data["idempotency_key"] = secrets.token_urlsafe(16)
        return data

    def service_fields(self) -> dict:
        """The service's keyword arguments (of an invalid form: those of the fields that parsed)."""
        data = self.cleaned_data
        llm = {key: data[key] for key in ("model", "temperature", "max_tokens") if data.get(key) not in (None, "")}
        fields = {"prompt": data.get("prompt"), "display_name": data.get("display_name", ""), "llm": llm or None,
                  "timeout_seconds": data.get("timeout_seconds"), "repos": data.get("repos"), "env": data.get("env"),
                  "idempotency_key": data.get("idempotency_key", "")}
        return fields

    def check_the_rest(self, clean) -> None:
        """On a form with errors of its own, the service's checks too (`clean(**fields)`), so
        every bad field is marked at once: the service's errors go to the fields that parsed."""
        fields = self.service_fields()
        fields.pop("idempotency_key")
        try:
            clean(**fields)
        except PierError as exc:
            for name, messages in self.at_fields(exc).details.items():
                if name in self.fields and name not in self.errors:
                    self.add_error(name, messages)

    def at_fields(self, exc: PierError) -> PierError:
        """The refusal with its details named by this form's fields: `llm.temperature` is
        `temperature`, `repos[1].url` is `repos` with the line it was typed on."""
        details: dict[str, list[str]] = {}
        for name, messages in exc.details.items():
            messages = [str(m) for m in (messages if isinstance(messages, list) else [messages])]
            entry = _ENTRY.match(name)
            if entry:
                field, index = entry.group(1), int(entry.group(2))
                lines = self.lines[field]
                number = lines[index] if index < len(lines) else index + 1
                details.setdefault(field, []).extend(f"Line {number}: {m}" for m in messages)
            elif name.startswith("llm.") and name[4:] in self.fields:
                details[name[4:]] = [_sentence(m) for m in messages]
            else:
                details[name] = [_sentence(m) for m in messages]
        return type(exc)(exc.message, code=exc.code, details=details)


class SessionCloneForm(forms.Form):
    # Empty: this project (automation posting nothing clones in place, as the API does).
    project = forms.ChoiceField(label="Into project", required=False,
                                help_text="This project or another one you may edit.")

    def __init__(self, *args, projects, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["project"].choices = [(p.slug, p.name if p.name == p.slug else f"{p.name} ({p.slug})")
                                          for p in projects]


class RunnerSecretForm(forms.Form):
    """The runner secret, write-only: NAME=value a line. Never shown again, not even after an
    error (the page says which line was wrong, by its name)."""

    values = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "autocomplete": "off", "spellcheck": "false"}), strip=False,
        label="New secret", help_text="One a line: NAME=value (the reference runner reads OPENAI_BASE_URL and "
                                      "OPENAI_API_KEY). Replaces the whole secret.")

    def secret_data(self) -> dict[str, str]:
        data: dict[str, str] = {}
        for number, line in enumerate(self.cleaned_data["values"].splitlines(), start=1):
            if not line.strip():
                continue
            name, sep, value = line.partition("=")
            if not sep or not name.strip():
                raise forms.ValidationError(f"Line {number}: write NAME=value.")
            data[name.strip()] = value
        if not data:
            raise forms.ValidationError("Give at least one NAME=value line.")
        return data

    def clean_values(self):
        self.cleaned_data["values"] = self.data.get("values", "")
        self.cleaned_data["parsed"] = self.secret_data()
        return self.cleaned_data["values"]

    def at_fields(self, exc: PierError) -> PierError:
        """The service names `data` or `data.NAME`: both belong to the one field here."""
        messages = [_sentence(str(m)) for ms in exc.details.values() for m in (ms if isinstance(ms, list) else [ms])]
        return type(exc)(exc.message, code=exc.code, details={"values": messages} if messages else {})

    @classmethod
    def blank(cls, errors=()) -> RunnerSecretForm:
        """An empty form showing `errors` at its field: what was typed held secrets, so it is
        not shown again."""
        form = cls(data={"values": ""})
        form.cleaned_data = {}
        form._errors = ErrorDict()
        if errors:
            form._errors["values"] = form.error_class(list(errors), renderer=form.renderer, field_id=form["values"].auto_id)
        return form
