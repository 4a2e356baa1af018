"""Comparing verifiers on a judged pool: the metrics (`metrics`) and the report built from them (`report`)."""
