"""Unit tests of the dispatch function and the job type catalog (moto in-process)."""
