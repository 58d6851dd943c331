"""Pydantic schemas: request bodies and public answers, per resource."""
