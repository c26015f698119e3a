"""Search spaces: torch-free genotypes with a lazy torch builder. Add one with `@SEARCH_SPACES.register`."""

from cosearch.search_spaces import darts, enas, mobilenet, nb201, timm_model  # noqa: F401  (register)
from cosearch.search_spaces.base import SEARCH_SPACES, Choice, Form, JointSpace, Sample, SearchSpace

__all__ = ["SEARCH_SPACES", "Choice", "Form", "JointSpace", "Sample", "SearchSpace"]
