from django import forms

from tenants.models import Role
from tenants.validators import EMAIL_MAX_LENGTH, validate_person_identifier


class MemberAddForm(forms.Form):
    username = forms.CharField(label="Username or email", max_length=EMAIL_MAX_LENGTH,
                               validators=[validate_person_identifier],
                               help_text="A username (at most 150 characters) or an email address.")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)
