"""Helpers that revision files import: prerequisite checks and lint justifications."""
