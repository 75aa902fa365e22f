"""Corpus building: music sources -> normalized ABC records -> DatasetDict."""
