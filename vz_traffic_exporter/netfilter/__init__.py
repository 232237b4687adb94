"""Shared knowledge of netfilter: parsing its dumps, naming our objects."""
