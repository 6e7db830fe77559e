"""The shipped digest templates, installed as the package data `newsletter.templates`."""
