"""Tests of fetchflow.storage."""
