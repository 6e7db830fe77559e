"""Validation rules shared by config.yaml, subscriber files and the mailer, so each rule lives once."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email


def check_email(value: str) -> str:
    """The address in normalised form, or ValueError saying what is wrong with it.

    Only plain ASCII addresses pass: the mailer does not speak SMTPUTF8, and an
    address that would fail at send time must fail here, where the file is named.
    Display names, comments, groups and control characters are all refused.
    """
    if not isinstance(value, str):
        raise ValueError('must be an email address such as "alice@example.org"')
    if not value.isascii():
        raise ValueError("must be an ASCII address: internationalised addresses (SMTPUTF8) are not supported")
    local, _, domain = value.rpartition("@")
    # `localhost` is a fine domain for a local sink or outbox; the library refuses it as special-use,
    # so check the local part against a stand-in domain and keep the original.
    on_localhost = domain.lower() == "localhost"
    try:
        checked = validate_email(f"{local}@example.org" if on_localhost else value, check_deliverability=False,
                                 allow_smtputf8=False, globally_deliverable=False)
    except EmailNotValidError as exc:
        raise ValueError(f'is not a valid email address ({exc}); use a plain address such as "alice@example.org"') \
            from None
    return f"{checked.local_part}@localhost" if on_localhost else str(checked.normalized)
