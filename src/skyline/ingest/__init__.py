"""The shared ingest layer: naming, validation, cardinality guards and the write path used by
every protocol (horizon's listeners and flux's routes)."""

from skyline.ingest.names import labelled_name, name_problem, split_labelled
from skyline.ingest.pipeline import Ingest, SubmitResult

__all__ = ["Ingest", "SubmitResult", "labelled_name", "name_problem", "split_labelled"]
